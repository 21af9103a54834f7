"""Command-line glue for PACS sources: the shared options, URL inputs for scan/convert,
``export --to`` and the ``query`` command.  Imports only typer at module level."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer

from .urls import is_url


def pacs_options() -> dict:
    """Options of every command that talks to a PACS (typer needs them per command)."""
    return dict(
        calling_aet=typer.Option("DICOMRECON", "--calling-aet", help="DIMSE: our AE title."),
        move_port=typer.Option(None, "--move-port", help="DIMSE: retrieve by C-MOVE to a "
                               "storage SCP dicomrecon starts on this port (the server must "
                               "know --calling-aet at this host and port) instead of C-GET."),
        cache=typer.Option(None, "--cache", help="Keep retrieved instances in this folder "
                           "(default: a private temporary folder, removed afterwards)."),
        ca_bundle=typer.Option(None, "--ca-bundle", help="DICOMweb over https: also trust "
                               "this CA (PEM file). Verification is always on."),
        timeout=typer.Option(30.0, "--timeout", help="Seconds to wait for a PACS answer."),
    )


def fetch_options(calling_aet, move_port, cache, ca_bundle, timeout):
    from .fetch import FetchOptions
    return FetchOptions(calling_aet=calling_aet, timeout=timeout, move_port=move_port,
                        ca_bundle=str(ca_bundle) if ca_bundle else None,
                        cache=str(cache) if cache else None)


@contextlib.contextmanager
def local_input(input: str, opts, bar=None):
    """Yield ``(folder, source)``: a local path as it is (source None), or a URL's study/series
    retrieved into the cache (removed afterwards unless --cache) with its source record."""
    if not is_url(input):
        yield input, None
        return
    from .fetch import retrieved
    tick = (lambda d, t: bar("retrieve", "", d, t)) if bar else None
    with retrieved(input, opts, tick) as got:
        yield got.folder, got.source()


def send_export(to: str, files: list, *, calling_aet: str, ca_bundle, timeout: float) -> bool:
    """``export --to``: send, print every accepted/rejected line, say whether all arrived."""
    from .send import send_files
    outcome = send_files(to, files, timeout=timeout, calling_aet=calling_aet,
                         ca_bundle=str(ca_bundle) if ca_bundle else None)
    for i, line in enumerate(outcome.lines()):
        if i == 0 and outcome.ok:
            typer.echo(line)
        else:
            typer.secho(line, fg=None if i == 0 else typer.colors.YELLOW, err=True)
    return outcome.ok


def register(app: typer.Typer, run) -> None:
    """Add ``dicomrecon query`` to the app; ``run`` is the CLI's one error handler."""
    o = pacs_options()

    from ..cli import PlainUsageCommand

    @app.command("query", cls=PlainUsageCommand)
    def query_cmd(
        url: str = typer.Argument(..., metavar="URL", help="http[s]://HOST[:PORT]/ROOT[/studies/UID] or "
                                  "dimse://AET@HOST:PORT[/UID]"),
        patient_id: Optional[str] = typer.Option(None, "--patient-id", help="PatientID "
                                                 "(wildcards * and ? allowed)."),
        study_date: Optional[str] = typer.Option(None, "--study-date", help="YYYYMMDD or a "
                                                 "range YYYYMMDD-YYYYMMDD (either end open)."),
        modality: Optional[str] = typer.Option(None, "--modality", help="e.g. CT, MR."),
        accession: Optional[str] = typer.Option(None, "--accession", help="AccessionNumber."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        calling_aet: str = o["calling_aet"], ca_bundle: Optional[Path] = o["ca_bundle"],
        timeout: float = o["timeout"],
    ):
        """List the studies and series of a PACS (QIDO-RS or C-FIND) that match the filters."""
        def go():
            from .query import Filters, as_json as to_json, query_dicomweb, query_dimse, table
            from .urls import parse_url
            u = parse_url(url, role="query")
            filters = Filters(patient_id, study_date, modality, accession)
            if u.kind == "dicomweb":
                from .dicomweb import WebOptions
                studies = query_dicomweb(u, filters, WebOptions(timeout, _str(ca_bundle)))
            else:
                from .dimse import DimseOptions
                studies = query_dimse(u, filters, DimseOptions(calling_aet, timeout))
            typer.echo(json.dumps(to_json(studies), indent=2) if as_json else table(studies))
        run(go)


def _str(p) -> Optional[str]:
    return str(p) if p else None
