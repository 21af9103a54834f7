"""Retrieve a study or series from a PACS into a folder, for the normal pipeline.

Files land in ``CACHE/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``: a private temporary folder
removed afterwards, or ``--cache DIR``, kept (instances already there are not fetched again).
Every instance the query found must arrive, or the retrieval fails: a conversion never runs on
part of a series.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..errors import PacsError
from .urls import PacsURL, parse_url


@dataclass
class FetchOptions:
    calling_aet: str = "DICOMRECON"
    timeout: float = 30.0
    move_port: Optional[int] = None
    ca_bundle: Optional[str] = None
    cache: Optional[str] = None


@dataclass
class Retrieved:
    folder: str          # what to scan: the series folder, or the study folder
    url: PacsURL
    series: list         # SeriesInstanceUIDs retrieved
    instances: int

    def source(self) -> dict:
        """What a sidecar records: the URL (never credentials), the UIDs, the cache."""
        return {**self.url.to_dict(), "retrieved_series": self.series,
                "instances": self.instances}


def _instances(url: PacsURL, opts: FetchOptions) -> tuple:
    """(client-or-None, [(series, sop)], SOP classes for C-GET) of the URL's study/series."""
    if url.kind == "dicomweb":
        from . import dicomweb
        web = dicomweb.client(url, dicomweb.WebOptions(opts.timeout, opts.ca_bundle))
        return web, dicomweb.search_instances(web, url), []
    from . import dimse
    rows = dimse.find_instances(url, _dimse_opts(opts))
    classes = dimse.study_sop_classes(url, _dimse_opts(opts)) if rows and not \
        opts.move_port else []
    return None, rows, classes


def _dimse_opts(opts: FetchOptions):
    from .dimse import DimseOptions
    return DimseOptions(opts.calling_aet, opts.timeout, opts.move_port)


def retrieve(url: PacsURL, study_dir: str, opts: FetchOptions,
             progress: Optional[Callable] = None, *, _sop_classes=None) -> Retrieved:
    """Fetch every instance of the URL's study/series into ``study_dir``."""
    web, rows, classes = _instances(url, opts)
    what = f"series {url.series_uid}" if url.series_uid else f"study {url.study_uid}"
    if not rows:
        raise PacsError(f"{url.display}: no instances found for {what} (unknown UID, or "
                        "not visible to this user/AE)")
    by_series: dict = {}
    for series, sop in rows:
        by_series.setdefault(series, set()).add(sop)
    done = [0]

    def tick(_sop):
        done[0] += 1
        if progress:
            progress(done[0], len(rows))
    for series, sops in by_series.items():
        folder = os.path.join(study_dir, series)
        os.makedirs(folder, exist_ok=True)
        missing = {s for s in sops if not os.path.exists(os.path.join(folder, s + ".dcm"))}
        done[0] += len(sops) - len(missing)
        if missing:
            try:
                _fetch_series(url, web, series, missing, folder, opts, tick,
                              classes if _sop_classes is None else _sop_classes)
            except PacsError as exc:
                raise PacsError(f"{exc}; {done[0]} of {len(rows)} instance(s) had arrived, "
                                "nothing was converted") from None
        got = {s for s in sops if os.path.exists(os.path.join(folder, s + ".dcm"))}
        if got != set(sops):
            raise PacsError(f"{url.display}: series {series}: {len(sops) - len(got)} of "
                            f"{len(sops)} instance(s) did not arrive")
    folder = os.path.join(study_dir, url.series_uid) if url.series_uid else study_dir
    return Retrieved(folder, url, sorted(by_series), len(rows))


def _fetch_series(url, web, series, missing, folder, opts, tick, sop_classes):
    if url.kind == "dicomweb":
        from . import dicomweb
        dicomweb.retrieve_series(web, url, series, missing, folder, tick)
        return
    from . import dimse
    store = dimse._Store(lambda _sop: folder, missing, tick)
    if opts.move_port:
        dimse.move_series(url, _dimse_opts(opts), series, store)
    else:
        dimse.get_series(url, _dimse_opts(opts), series, sop_classes, store)


def _clean_parts(folder: str) -> None:
    for root, _dirs, names in os.walk(folder):
        for n in names:
            if n.endswith(".part"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, n))


@contextlib.contextmanager
def retrieved(url_text: str, opts: FetchOptions,
              progress: Optional[Callable] = None) -> Iterator[Retrieved]:
    """Retrieve into the cache, yield, then remove a private cache (``--cache`` is kept)."""
    url = parse_url(url_text)
    if opts.cache:
        base = os.path.abspath(opts.cache)
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as exc:
            raise PacsError(f"--cache {opts.cache}: cannot create ({exc.strerror})") from None
    else:
        base = tempfile.mkdtemp(prefix="dicomrecon-pacs-")
    try:
        study_dir = os.path.join(base, url.study_uid)
        os.makedirs(study_dir, exist_ok=True)
        try:
            result = retrieve(url, study_dir, opts, progress)
        finally:
            _clean_parts(study_dir)
        yield result
    finally:
        if not opts.cache:
            shutil.rmtree(base, ignore_errors=True)
