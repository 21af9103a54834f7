"""``dicomrecon batch INPUT... -o OUTDIR``: registered on the main typer app by
:func:`register` (heavy imports happen inside the command)."""

import os
from pathlib import Path
from typing import List, Optional

import typer

from .layout import DEFAULT_LAYOUT, DEFAULT_RETRIES, STUDY_TOKENS, start_fork_server

LAYOUT_HELP = ("Output path template below OUTDIR; the last component is the file name, as "
               "convert --name (its tokens: %n SeriesNumber, %d SeriesDescription, %m Modality, "
               "%p ProtocolName, %i PatientID, %u SeriesInstanceUID, %g group index), plus "
               + ", ".join(f"{k} {v.split(' (')[0]}" for k, v in STUDY_TOKENS.items())
               + " (%s: the last 8 characters of StudyInstanceUID when StudyID is empty).")


def register(app: typer.Typer, main_cli) -> None:
    """Add the batch command to ``app``; ``main_cli`` is dicomrecon.cli (its shared options)."""
    P = main_cli._P
    from ..sources.cli import pacs_options
    S = pacs_options()

    @app.command("batch", cls=main_cli.PlainUsageCommand)
    def batch_cmd(
        inputs: Optional[List[str]] = typer.Argument(None, metavar="INPUT",
                                                     help="Folders (any nesting), files, "
                                                     "DICOMDIR files, or PACS URLs "
                                                     "(http[s]://.../studies/UID[/series/UID], "
                                                     "dimse://AET@HOST:PORT/STUDY[/SERIES])."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder (created if "
                                    "needed; never inside an input)."),
        from_list: Optional[Path] = typer.Option(None, "--from-list", help="A file with one "
                                                 "input path per line."),
        fmt: main_cli.Format = typer.Option(main_cli.Format.nii_gz, "-f", "--format",
                                            help="Output format."),
        layout: str = typer.Option(DEFAULT_LAYOUT, "--layout", help=LAYOUT_HELP),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local worker "
                                              "processes (default: the number of cores)."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Run on the workers "
                                                "of this Dask scheduler (tcp://host:8786); they "
                                                "must see the same input and output paths."),
        task_timeout: Optional[float] = typer.Option(None, "--task-timeout", min=0.001,
                                                     help="Seconds one series may take; a "
                                                     "series over it is recorded as failed."),
        retries: int = typer.Option(DEFAULT_RETRIES, "--retries", min=0, help="How many "
                                    "times a series whose worker process died (killed, out of "
                                    "memory) is tried again before it is recorded as failed."),
        progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                                help="Progress bar (default: on a terminal)."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the summary, "
                                   "refusals and failures."),
        tilt: main_cli.TiltPolicy = P["tilt"], irregular: main_cli.IrregularPolicy = P["irregular"],
        spacing: str = P["spacing"], interpolation: main_cli.Interp = P["interpolation"],
        max_gap: float = P["max_gap"], merge_4d: bool = P["merge_4d"],
        no_geometry: bool = P["no_geometry"], spacing_tolerance: float = P["spacing_tolerance"],
        calling_aet: str = S["calling_aet"], move_port: Optional[int] = S["move_port"],
        cache: Optional[Path] = S["cache"], ca_bundle: Optional[Path] = S["ca_bundle"],
        timeout: float = S["timeout"],
    ):
        """Convert every series under the INPUTs into OUTDIR, on a local pool or a Dask cluster.

        Resumable: OUTDIR/dicomrecon-batch.jsonl records each series' inputs and outputs, and
        running the same command again converts only what changed.  Exit code 0 when every
        series was written, 4 when any was refused or failed, 3 when no DICOM image was found.
        """
        if not scheduler:  # the local pool's fork server imports while this process does
            start_fork_server()
        policy = main_cli._make_policy(tilt, irregular, spacing, interpolation, max_gap,
                                       merge_4d, no_geometry,
                                       spacing_tolerance=spacing_tolerance)

        def run():
            from contextlib import ExitStack

            from ..sources.cli import fetch_options, local_input
            from .runner import BatchOptions, run_batch
            fetch = fetch_options(calling_aet, move_port, cache, ca_bundle, timeout)
            with ExitStack() as stack:  # PACS inputs: retrieved first, removed at the end
                local, remote = [], {}
                for given in inputs or []:
                    folder, source = stack.enter_context(local_input(given, fetch))
                    local.append(folder)
                    if source is not None:
                        remote[os.path.abspath(folder)] = source
                opts = BatchOptions(local, str(output),
                                    from_list=str(from_list) if from_list else None,
                                    fmt=fmt.value, layout=layout, policy=policy, workers=workers,
                                    scheduler=scheduler, task_timeout=task_timeout,
                                    retries=retries, progress=main_cli._progress_enabled(progress),
                                    sources=remote)
                result = run_batch(opts, echo=typer.echo)
            _report(result, quiet)
            if result.exit_code:
                raise typer.Exit(int(result.exit_code))
        main_cli._run(run)


def _report(result, quiet: bool) -> None:
    from .manifest import MANIFEST
    from .summary import CONVERTED, SKIPPED, SUMMARY, counts_table
    for r in result.rows:
        if r.status == "written" and r.this_run == CONVERTED and not quiet:
            typer.echo(f"wrote {r.outputs.replace(';', ', ')}")
        elif r.status != "written":
            typer.secho(f"{r.status} series {r.series_number} {r.description!r} ({r.series}): "
                        f"{r.reasons}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{result.n_files} file(s) read by the {result.engine}; "
               f"{len(result.skipped)} skipped (listed in {SKIPPED})")
    typer.echo(counts_table(result.rows))
    typer.echo(f"summary: {result.outdir}/{SUMMARY}; manifest: {result.outdir}/{MANIFEST}")
    if not result.rows:
        typer.secho("no DICOM image found", fg=typer.colors.RED, err=True)
