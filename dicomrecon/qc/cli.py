"""The ``dicomrecon qc`` command; ``dicomrecon/cli.py`` registers it with :func:`register`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, run) -> None:
    """Add ``qc OUTDIR`` to ``app``; ``run(fn)`` is the CLI's one error handler."""

    from ..cli import PlainUsageCommand

    @app.command("qc", cls=PlainUsageCommand)
    def qc_cmd(
        outdir: Path = typer.Argument(..., metavar="OUTDIR", help="The output folder of 'dicomrecon convert' "
                                      "(holding dicomrecon-report.json and the sidecars)."),
    ):
        """Write OUTDIR/qc/index.html: mid-planes, before/after, slice positions and findings
        of every volume of a conversion, its refused groups and skipped files."""

        def go():
            typer.echo(f"wrote {write_page(outdir)}")
        run(go)


def write_page(outdir, kept=None) -> str:
    from . import write_qc
    return write_qc(str(outdir), kept)


def collector():
    """A :class:`~dicomrecon.qc.Collector` for convert (``on_output`` and ``on_decoded``);
    starts importing matplotlib in the background meanwhile."""
    from . import Collector, preload
    preload()
    return Collector()


def write_scan_page(result, folder, policy) -> str:
    from . import write_scan_qc
    return write_scan_qc(result, str(folder), policy)
