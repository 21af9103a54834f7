"""The ``dicomrecon`` command line.  Heavy imports live inside the commands so --help is instant."""

from __future__ import annotations

import json
import os
import re
import sys
from enum import Enum

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel then
# compacts memory on demand (THP defrag "madvise"), filling a 500 MB volume stalls for about a
# second.  Set before numpy is imported; a user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
from pathlib import Path, PurePath
from typing import Optional

import typer
import typer.core

from . import __version__
from .errors import DicomReconError, ExitCode
from .sources.cli import pacs_options

class _TypedDefaults:
    """Mixin of our command and group classes: see :class:`_AsTyped`."""

    def parse_args(self, ctx, args):
        for param in self.get_params(ctx):  # with --help
            if getattr(param, "_runtime_param", 0) is None and hasattr(param, "type_descriptor"):
                param._runtime_param = _AsTyped(param.type_descriptor)
        return super().parse_args(ctx, args)


class _Group(_TypedDefaults, typer.core.TyperGroup):
    pass


class PlainUsageCommand(_TypedDefaults, typer.core.TyperCommand):
    """A command whose usage line reads "scan [OPTIONS] INPUT", not typer's "{INPUT}"."""

    def collect_usage_pieces(self, ctx) -> list:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p
                for p in super().collect_usage_pieces(ctx)]


class _AsTyped:
    """typer's coercion of one parameter value, skipped when the value already has the
    parameter's type.

    typer (>= 0.26) coerces every value, defaults included, through a pydantic ``TypeAdapter``
    it builds on first use: importing pydantic and building ~20 adapters took ~0.25 s of CPU
    per run, more than ``dicomrecon scan`` spends on the headers of 1000 files.  A value that
    already is of the annotated type (a default, a positional string) comes out of that
    coercion unchanged, so it is returned as it is; any other value (an option typed on the
    command line) goes through typer's own coercion, with its checks and error messages.
    """

    def __init__(self, descriptor):
        self.descriptor = descriptor
        info = descriptor.parameter_info
        plain = descriptor.file_annotation is None and getattr(info, "parser", None) is None \
            and getattr(info, "min", None) is None and getattr(info, "max", None) is None
        self.type = descriptor.annotation if plain and isinstance(descriptor.annotation, type) \
            else None
        self.full = None

    def coerce(self, value, param, ctx):
        multi = param.multiple or param.nargs == -1
        if not multi and (value is None or (self.type is not None and type(value) is self.type)):
            return value
        if not multi and self.type is not None and isinstance(value, str):
            typed = _plain_value(self.type, value)
            if typed is not _UNHANDLED:
                return typed
        if self.full is None:
            from typer._coercion import build_runtime_param
            self.full = build_runtime_param(self.descriptor)
        return self.full.coerce(value, param=param, ctx=ctx)


_UNHANDLED = object()
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def _plain_value(kind: type, text: str):
    """A command-line string as ``kind`` where the result is plain, the one pydantic's lax
    coercion gives (an Enum member by its exact value, a Path, a decimal int or float);
    anything else is :data:`_UNHANDLED` and goes through typer, with its checks and messages.
    The option most commands take (``-o DIR``, ``-f nii``) then costs no pydantic import (~0.13 s,
    measured on ``convert -f nii`` of 300 RLE files, 15 % of the run)."""
    if issubclass(kind, Enum):
        return kind(text) if text in kind._value2member_map_ else _UNHANDLED
    if kind in (Path, PurePath) and text:
        return kind(text)
    if kind is int and _INT.match(text):
        return int(text)
    if kind is float and _FLOAT.match(text):
        return float(text)
    return _UNHANDLED


app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    pretty_exceptions_enable=False,  # --debug: Python's own plain traceback
    help="Turn DICOM slice series into correct 3D volumes, or refuse with a reason.\n\n"
         "Exit codes: 0 ok, 1 internal error, 2 usage, 3 no DICOM found, 4 partial (some groups "
         "refused, or a damaged slice), 5 every group refused, 6 bad output folder, 7 bad input "
         "path, 8 ambiguous input, 9 PACS/network error; 130, 143, 129 stopped by SIGINT, SIGTERM, SIGHUP (temporary "
         "files removed).",
)


class Format(str, Enum):
    nii_gz = "nii.gz"
    nii = "nii"
    nrrd = "nrrd"
    mha = "mha"


class TiltPolicy(str, Enum):
    resample = "resample"
    preserve = "preserve"
    refuse = "refuse"


class IrregularPolicy(str, Enum):
    resample = "resample"
    split = "split"
    refuse = "refuse"


class Interp(str, Enum):
    linear = "linear"
    nearest = "nearest"


class Engine(str, Enum):
    auto = "auto"
    itk = "itk"


def _policy_options():
    """The policy options shared by scan and convert (typer needs them per command)."""
    return dict(
        tilt=typer.Option(TiltPolicy.resample, "--tilt", help="Gantry-tilted stacks: resample "
                          "onto an orthogonal grid, preserve the exact sheared grid (nii/nrrd "
                          "only), or refuse."),
        irregular=typer.Option(IrregularPolicy.resample, "--irregular", help="Irregular spacing, "
                               "missing slices: resample onto a regular grid, split into "
                               "regular runs, or refuse."),
        spacing=typer.Option("median", "--spacing", help="Slice spacing when resampling: "
                             "median or min of the source steps, or a number of mm."),
        interpolation=typer.Option(Interp.linear, "--interpolation", help="linear, or nearest "
                                   "for label images."),
        max_gap=typer.Option(3.0, "--max-gap", help="When resampling, split the volume at gaps "
                             "wider than this many median steps instead of filling them."),
        merge_4d=typer.Option(False, "--4d", help="Write repeats of one grid (time points, "
                              "echoes, b-values...) as one 4D NIfTI; the 4th axis is recorded in "
                              "the sidecar."),
        no_geometry=typer.Option(False, "--no-geometry", help="Also take images without "
                                 "ImagePositionPatient/ImageOrientationPatient (CR, DX, secondary "
                                 "captures...), on a placeholder affine flagged in the sidecar."),
        engine=typer.Option(Engine.auto, "--engine", help="Pixel decoder: auto (the fastest "
                            "verified path: uncompressed files read in place, lossless grey "
                            "RLE/JPEG-LS/JPEG by their codec libraries, the rest through ITK, "
                            "in parallel) or itk (SimpleITK ImageSeriesReader for "
                            "every file). Both give the same voxels."),
        max_voxels=typer.Option(2 ** 31, "--max-voxels", help="Largest output grid (voxels); "
                                "a larger one is refused before decoding (exit 2 when --spacing "
                                "asked for it)."),
        spacing_tolerance=typer.Option(0.01, "--spacing-tolerance", metavar="FRACTION",
                                       help="Slice steps within this fraction of the median step "
                                       "are regular (0.01 = 1 %); scan and convert both use it."),
    )


_P = _policy_options()
_S = pacs_options()


def _make_policy(tilt, irregular, spacing, interpolation, max_gap, merge_4d=False,
                 no_geometry=False, engine=Engine.auto, max_voxels=2 ** 31,
                 spacing_tolerance=0.01):
    from dataclasses import replace

    from .geometry import DEFAULT_TOLERANCES
    from .plan import Policy
    if not 0 <= spacing_tolerance < 1:
        raise typer.BadParameter(f"{spacing_tolerance:g}: the spacing tolerance is a fraction of "
                                 "the median step, from 0 up to (not including) 1",
                                 param_hint="--spacing-tolerance")
    try:
        return Policy(tilt=tilt.value, irregular=irregular.value, spacing=_spacing(spacing),
                      interpolation=interpolation.value, max_gap=max_gap, merge_4d=merge_4d,
                      no_geometry=no_geometry, engine=engine.value, max_voxels=max_voxels,
                      tolerances=replace(DEFAULT_TOLERANCES, spacing_rel=spacing_tolerance))
    except ValueError as exc:
        raise _option_error(str(exc)) from None


#: Policy field -> the option that sets it, so a usage error names what the user typed.
OPTION_OF_FIELD = {"max_gap": "--max-gap", "max_voxels": "--max-voxels", "tilt": "--tilt",
                   "irregular": "--irregular", "interpolation": "--interpolation",
                   "spacing": "--spacing", "merge_4d": "--4d", "no_geometry": "--no-geometry"}


def _option_error(message: str) -> typer.BadParameter:
    """A Policy ValueError as a usage error naming the option, not the Python field."""
    import re
    first = message.split(" ", 1)[0]
    option = OPTION_OF_FIELD.get(first)
    if option is None:
        return typer.BadParameter(message)
    rest = re.sub(r"^\S+( policy)?\s*", "", message)
    return typer.BadParameter(f"{option} {rest}", param_hint=option)


def _spacing(value: str):
    if value in ("median", "min"):
        return value
    try:
        mm = float(value)
    except ValueError:
        raise typer.BadParameter(f"--spacing {value!r}: use median, min or a number of mm")
    if not mm > 0:
        raise typer.BadParameter(f"--spacing {value!r}: must be a positive number of mm")
    return mm


class _State:
    debug = False
    interrupt_reported = False


def _err(message: str) -> None:
    typer.secho(f"dicomrecon: error: {message}", fg=typer.colors.RED, err=True)


def _run(fn):
    """The one error handler: a known error is one line and its exit code."""
    try:
        return fn()
    except DicomReconError as exc:
        if _State.debug:
            raise
        _err(str(exc))
        raise typer.Exit(int(exc.exit_code))
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM, SIGHUP: see dicomrecon.signals
        from .signals import exit_code
        _err(f"interrupted by {getattr(exc, 'name', 'SIGINT')}")
        _State.interrupt_reported = True
        raise typer.Exit(exit_code(exc))
    except BrokenPipeError:  # e.g. "dicomrecon scan DIR | head": the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0)
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: one line unless --debug
        if _State.debug:
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the "
             "traceback, and please report it)")
        raise typer.Exit(int(ExitCode.INTERNAL_ERROR))


def _version(value: bool):
    if value:
        typer.echo(f"dicomrecon {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
):
    _State.debug = debug


def _progress_enabled(flag: Optional[bool]) -> bool:
    return sys.stderr.isatty() if flag is None else flag


class _Progress:
    """A rich progress bar on stderr when asked for (default: when stderr is a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.tasks = {}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
            self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def __call__(self, stage, label, done, total):
        if not self.bar:
            return
        key = (stage, label)
        if stage == "write":  # bytes: shown in MiB
            done, total = done >> 20, max(1, total >> 20)
        if key not in self.tasks:
            text = {"scan": "reading headers", "decode": f"decoding {label}",
                    "resample": f"resampling {label}",
                    "write": f"writing {label} (MiB)"}.get(stage, stage)
            self.tasks[key] = self.bar.add_task(text, total=total)
        self.bar.update(self.tasks[key], completed=done, total=total)


# --------------------------------------------------------------------------------------------
@app.command("scan", cls=PlainUsageCommand)
def scan_cmd(
    input: str = typer.Argument(..., metavar="INPUT", help="A DICOM folder (searched recursively) or file, or "
                                "a PACS URL: http[s]://HOST[:PORT]/ROOT/studies/UID[/series/UID] "
                                "or dimse://AET@HOST:PORT/STUDY_UID[/SERIES_UID]."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON document instead of a table."),
    series: Optional[str] = typer.Option(None, "--series", help="Only this SeriesInstanceUID."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress bar (default: on a terminal)."),
    tilt: TiltPolicy = _P["tilt"], irregular: IrregularPolicy = _P["irregular"],
    spacing: str = _P["spacing"], interpolation: Interp = _P["interpolation"],
    max_gap: float = _P["max_gap"], no_geometry: bool = _P["no_geometry"],
    engine: Engine = _P["engine"],
    qc_dir: Optional[Path] = typer.Option(None, "--qc", metavar="DIR", help="Also make a "
                                          "page DIR/index.html with the slice-position plot of "
                                          "every stack (headers only, no pixels decoded)."),
    max_voxels: int = _P["max_voxels"], spacing_tolerance: float = _P["spacing_tolerance"],
    calling_aet: str = _S["calling_aet"], move_port: Optional[int] = _S["move_port"],
    cache: Optional[Path] = _S["cache"], ca_bundle: Optional[Path] = _S["ca_bundle"],
    timeout: float = _S["timeout"],
):
    """List the series and volume groups under INPUT, their geometry, findings, and what
    convert would do with them under the given policy (exit code as convert's would be,
    before decoding: 0, 3, 4 or 5)."""
    # a scan does no linear algebra worth threads: OpenBLAS's thread pool, started when numpy is
    # imported, cost ~0.05 s of a 1000-file scan (the user's own setting wins)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    policy = _make_policy(tilt, irregular, spacing, interpolation, max_gap,
                          no_geometry=no_geometry, engine=engine, max_voxels=max_voxels,
                          spacing_tolerance=spacing_tolerance)

    def run():
        from .discovery import scan
        from .report import scan_json, scan_table
        from .sources.cli import fetch_options, local_input
        fetch = fetch_options(calling_aet, move_port, cache, ca_bundle, timeout)
        with _Progress(_progress_enabled(progress)) as bar, \
                local_input(input, fetch, bar) as (folder, _source):
            result = scan(folder, series_uid=series, tol=policy.tolerances, engine=policy.engine,
                          progress=lambda d, t: bar("scan", "", d, t))
        if as_json:
            typer.echo(json.dumps(scan_json(result, policy), indent=2, default=str))
        else:
            typer.echo(scan_table(result, policy))
        if qc_dir is not None and result.groups:
            from .qc.cli import write_scan_page
            typer.echo(f"wrote {write_scan_page(result, qc_dir, policy)}", err=as_json)
        if not result.groups:
            from .errors import NoDicomError
            raise NoDicomError(f"{input}: no DICOM image found ({len(result.skipped)} file(s) "
                               "skipped)")
        code = scan_exit_code(result, policy)
        if code:
            raise typer.Exit(int(code))
    _run(run)


@app.command("convert", cls=PlainUsageCommand)
def convert_cmd(
    input: str = typer.Argument(..., metavar="INPUT", help="A DICOM folder (searched recursively) or file, or "
                                "a PACS URL: http[s]://HOST[:PORT]/ROOT/studies/UID[/series/UID] "
                                "or dimse://AET@HOST:PORT/STUDY_UID[/SERIES_UID]."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (created if needed; "
                                "never inside INPUT)."),
    fmt: Format = typer.Option(Format.nii_gz, "-f", "--format", help="Output format."),
    series: Optional[str] = typer.Option(None, "--series", help="Only this SeriesInstanceUID."),
    name: str = typer.Option("%n_%d", "--name", help="Output name template: %n SeriesNumber, "
                             "%d SeriesDescription, %m Modality, %p ProtocolName, %i PatientID, "
                             "%u SeriesInstanceUID, %g group index."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress bar (default: on a terminal)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only errors and refusals."),
    tilt: TiltPolicy = _P["tilt"], irregular: IrregularPolicy = _P["irregular"],
    spacing: str = _P["spacing"], interpolation: Interp = _P["interpolation"],
    max_gap: float = _P["max_gap"], merge_4d: bool = _P["merge_4d"],
    no_geometry: bool = _P["no_geometry"], engine: Engine = _P["engine"],
    max_voxels: int = _P["max_voxels"],
    spacing_tolerance: float = _P["spacing_tolerance"],
    qc: bool = typer.Option(False, "--qc", help="Also write OUTPUT/qc/index.html, the visual "
                            "QC page (see 'dicomrecon qc')."),
    bids: bool = typer.Option(False, "--bids", help="Sidecars carry BIDS keys (seconds, "
                              "degrees) at the top level, dicomrecon's record under "
                              "\"dicomrecon\" (see README \"Diffusion and BIDS\")."),
    calling_aet: str = _S["calling_aet"], move_port: Optional[int] = _S["move_port"],
    cache: Optional[Path] = _S["cache"], ca_bundle: Optional[Path] = _S["ca_bundle"],
    timeout: float = _S["timeout"],
):
    """Write one volume and a JSON sidecar per reconstructable group of INPUT into OUTPUT."""
    policy = _make_policy(tilt, irregular, spacing, interpolation, max_gap, merge_4d, no_geometry,
                          engine, max_voxels, spacing_tolerance)
    if merge_4d and fmt not in (Format.nii, Format.nii_gz):
        raise typer.BadParameter("--4d writes NIfTI only (-f nii or nii.gz): ITK cannot read a "
                                 "spatial NRRD or MHA with a time axis", param_hint="--4d")

    def run():
        from .conversion import convert
        from .errors import NoDicomError
        from .sources.cli import fetch_options, local_input
        fetch = fetch_options(calling_aet, move_port, cache, ca_bundle, timeout)
        keep = None
        if qc:
            from .qc.cli import collector
            keep = collector()
        with _Progress(_progress_enabled(progress)) as bar, \
                local_input(input, fetch, bar) as (folder, source):
            result = convert(folder, str(output), fmt=fmt.value, series_uid=series,
                             name=name, policy=policy, progress=bar, on_output=keep,
                             bids=bids, source=source, on_decoded=keep and keep.decoded)
        lost = {p for p, _ in result.damaged_files}
        for path, why in result.skipped:
            if not quiet or path in lost:  # a damaged slice of a written volume: always shown
                typer.echo(f"skipped {path}: {why}", err=True)
        for o in result.outputs:
            if not quiet:
                typer.echo(f"wrote {o.path} ({'x'.join(map(str, o.shape_xyz))}) + "
                           f"{os.path.basename(o.sidecar)}")
            for note in o.notes:  # e.g. a sheared grid that ITK cannot open as it is
                typer.secho(f"  note: {note}", fg=typer.colors.YELLOW, err=True)
        for r in result.refused:
            for reason in r.reasons:
                typer.secho(f"refused group {r.group}: {reason['message']} "
                            f"[{reason.get('code', 'REFUSED')}]", fg=typer.colors.YELLOW, err=True)
        if result.exit_code == ExitCode.NO_DICOM:
            raise NoDicomError(f"{input}: no DICOM image found ({len(result.skipped)} file(s) "
                               "skipped)")
        if qc:
            from .qc.cli import write_page
            page = write_page(output, keep.kept)
            if not quiet:
                typer.echo(f"wrote {page}")
        if result.exit_code:
            raise typer.Exit(int(result.exit_code))
    _run(run)


def scan_exit_code(result, policy) -> ExitCode:
    """What convert's exit code would be, as far as the headers tell: 5 when every group is
    refused, 4 when some are (or a volume lost a damaged slice), else 0."""
    from .plan import plan_group
    plans = [plan_group(g, policy) for g in result.groups]
    written = [gp for gp in plans if not gp.refused]
    if len(written) < len(plans) or any(gp.group.damaged for gp in written):
        return ExitCode.PARTIAL if written else ExitCode.NOTHING_CONVERTED
    return ExitCode.OK


# --- export command (begin)
@app.command("export", cls=PlainUsageCommand)
def export_cmd(
    input: Path = typer.Argument(..., metavar="INPUT",
                                 help="A volume file (.nii, .nii.gz, .nrrd, .mha) or a DICOM "
                                 "folder holding one volume."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the DICOM series "
                                "(written atomically; must not exist or be empty, unless "
                                "--force)."),
    like: Optional[Path] = typer.Option(None, "--like", help="Reference whose patient, study and "
                                        "frame of reference the series keeps: a DICOM folder, or "
                                        "the NAME.json sidecar of a conversion (default: NAME.json "
                                        "beside INPUT, or INPUT's own DICOM source)."),
    standalone: bool = typer.Option(False, "--standalone", help="Ignore the automatic reference: "
                                    "new study and frame of reference."),
    series_number: Optional[int] = typer.Option(None, "--series-number", help="SeriesNumber "
                                                "(default: 1000 + the source's, or 1000)."),
    series_description: Optional[str] = typer.Option(None, "--series-description",
                                                     help="SeriesDescription (default: the "
                                                     "source's + ' derived')."),
    patient_name: Optional[str] = typer.Option(None, "--patient-name", help="PatientName of a "
                                               "standalone series (e.g. 'Doe^Jane')."),
    patient_id: Optional[str] = typer.Option(None, "--patient-id", help="PatientID of a "
                                             "standalone series."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Override the Modality "
                                           "(e.g. OT for a label image made from a CT)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    to: Optional[str] = typer.Option(None, "--to", help="Then send the series to a PACS: "
                                     "http[s]://HOST[:PORT]/ROOT (STOW-RS) or "
                                     "dimse://AET@HOST:PORT (C-STORE); exit 9 unless every "
                                     "instance is accepted."),
    calling_aet: str = _S["calling_aet"], ca_bundle: Optional[Path] = _S["ca_bundle"],
    timeout: float = _S["timeout"],
):
    """Write a volume as a derived DICOM series (CT Image, MR Image or Secondary Capture)."""

    def run():
        from .export import export_series
        if to:
            from .sources.urls import parse_url
            parse_url(to, role="destination")  # a bad URL fails before anything is written
        result = export_series(str(input), str(output), like=str(like) if like else None,
                               series_number=series_number, series_description=series_description,
                               patient_name=patient_name, patient_id=patient_id,
                               modality=modality, standalone=standalone, force=force)
        for note in result.notes:
            typer.echo(note)
        typer.echo(f"wrote {len(result.files)} file(s) to {result.outdir}: "
                   f"{result.sop_class_name}, Modality {result.modality}, SeriesNumber {result.series_number}, "
                   f"{'x'.join(map(str, result.shape_xyz))}, SeriesInstanceUID "
                   f"{result.series_instance_uid}")
        if result.values is not None:
            typer.echo(f"values: {result.values.describe()}; quantisation step "
                       f"{result.values.step:.6g}")
        typer.echo(f"source references: {result.source_references} of {len(result.files)} "
                   "instance(s)" if result.reference else "standalone: new study and frame of "
                   "reference")
        if to:
            from .errors import PacsError
            from .sources.cli import send_export
            if not send_export(to, result.files, calling_aet=calling_aet, ca_bundle=ca_bundle,
                               timeout=timeout):
                raise PacsError(f"{to}: not every instance was accepted (listed above)")
    _run(run)
# --- export command (end)


from .qc.cli import register as _register_qc  # noqa: E402  (the qc command)
_register_qc(app, _run)
from .sources.cli import register as _register_pacs  # noqa: E402  (dicomrecon query)
_register_pacs(app, _run)
# --- batch command (dicomrecon/batch/cli.py)
from .batch.cli import register as _register_batch  # noqa: E402

_register_batch(app, sys.modules[__name__])


def main():  # console-script entry point
    import warnings
    # pydicom warns about odd values as it parses; dicomrecon reports what matters itself,
    # as findings and skip reasons, so its warnings would only be noise on the terminal.
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    from . import signals
    signals.install()  # SIGTERM and SIGHUP clean up like Ctrl-C, for every command
    try:
        app()
    except SystemExit as exc:  # a signal outside a command's _run: typer exits 130 silently
        got = signals.received()
        if got is not None and not _State.interrupt_reported:
            _err(f"interrupted by {got.name}")
            raise SystemExit(signals.exit_code(got)) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
