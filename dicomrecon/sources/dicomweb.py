"""DICOMweb with dicomweb-client: QIDO-RS search, WADO-RS retrieval, STOW-RS storage.

Every call goes through :func:`_call`, which turns requests' and dicomweb-client's exceptions
into one-line :class:`PacsError` (final) or :class:`Transient` (retried) messages that name the
server, never the credentials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import PacsError
from . import credentials
from .retry import Transient, with_retries
from .urls import PacsURL, redact

# WADO-RS: instances as the server stores them (no transcoding, so nothing lossy is decoded
# and re-encoded on the way).
ANY_SYNTAX = (("application/dicom", "*"),)
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
INSTANCE_FIELDS = ["SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]


@dataclass
class WebOptions:
    timeout: float = 30.0
    ca_bundle: Optional[str] = None


def missing_extra(name: str) -> PacsError:
    return PacsError(f"PACS support needs the {name} package, which is not installed",
                     hint="pip install 'dicomrecon[pacs]'")


def client(url: PacsURL, opts: WebOptions):
    """A DICOMwebClient for ``url.base`` with credentials and TLS verification set."""
    try:
        from dicomweb_client.api import DICOMwebClient
        import requests
    except ImportError:
        raise missing_extra("dicomweb-client") from None
    import logging
    # dicomweb-client logs server warnings itself; without a handler Python would print them
    # beside our one-line messages.  What matters is reported by us.
    logging.getLogger("dicomweb_client").addHandler(logging.NullHandler())
    session = requests.Session()
    # Not trust_env: with it, requests lets REQUESTS_CA_BUNDLE override --ca-bundle and reads
    # netrc behind our back.  Proxies from the environment (and no_proxy) still apply.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(url.base)
    creds = credentials.load(url.host)
    if creds.kind == "basic":
        session.auth = (creds.user, creds.secret)
    elif creds.kind == "bearer":
        session.auth = _Bearer(creds.secret)  # an auth object: requests' netrc never overrides
    session.verify = _ca_bundle(opts.ca_bundle) if opts.ca_bundle else (
        os.environ.get("REQUESTS_CA_BUNDLE") or True)
    web = DICOMwebClient(url.base, session=session, timeout=opts.timeout)
    web.set_http_retry_params(retry=False)  # we retry ourselves, bounded, for more errors
    web.dicomrecon_creds = creds
    return web


class _Bearer:
    """requests auth: ``Authorization: Bearer TOKEN`` (repr never shows the token)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


def _ca_bundle(path: str) -> str:
    """The default CA bundle ($REQUESTS_CA_BUNDLE, else certifi's) plus ``path``, in a private
    file: ``--ca-bundle`` adds a CA."""
    if not os.path.isfile(path):
        raise PacsError(f"--ca-bundle {path}: no such file")
    import certifi
    default = os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
    fd, out = tempfile.mkstemp(prefix="dicomrecon-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as dst:
        for src in (default, path):
            with open(src, "rb") as f:
                shutil.copyfileobj(f, dst)
            dst.write(b"\n")
    import atexit
    atexit.register(lambda: os.path.exists(out) and os.unlink(out))
    return out


def _call(what: str, url: PacsURL, fn: Callable, *, creds_text: str = ""):
    """Run one request; classify its failure."""
    import requests
    try:
        return fn()
    except requests.exceptions.SSLError as exc:
        raise PacsError(f"{url.base}: TLS certificate verification failed ({_reason(exc)})",
                        hint="add the server's CA with --ca-bundle FILE") from None
    except requests.exceptions.Timeout:
        raise Transient(f"{url.base}: no answer within the timeout while {what}") from None
    except requests.exceptions.ConnectionError as exc:
        raise Transient(f"{url.base}: connection failed while {what} ({_reason(exc)})") from None
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        msg = f"{url.base}: HTTP {status} {_phrase(exc)} while {what}"
        if status in RETRY_STATUS:
            raise Transient(msg) from None
        if status in (401, 403):
            raise PacsError(msg, hint=f"check the credentials ({creds_text})") from None
        if status == 404:
            raise PacsError(f"{msg}: no such study, series or service root") from None
        raise PacsError(msg) from None
    except requests.exceptions.RequestException as exc:  # e.g. a connection cut mid-body
        raise Transient(f"{url.base}: transfer failed while {what} ({_reason(exc)})") from None


def _phrase(exc) -> str:
    return getattr(exc.response, "reason", "") or ""


def _reason(exc) -> str:
    """The innermost reason of a requests/urllib3 error, short and without URLs' secrets."""
    inner = exc
    for _ in range(5):
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) \
                else None
        if nxt is None or nxt is inner:
            break
        inner = nxt
    text = str(inner)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return redact(text.split(": ", 1)[-1] if "object at 0x" in text else text)[:200]


def search_instances(web, url: PacsURL) -> list:
    """QIDO-RS: (series UID, SOP instance UID) of every instance of the URL's study/series."""
    creds = web.dicomrecon_creds.describe()
    what = f"searching for the instances of study {url.study_uid}"
    rows = with_retries(lambda: _call(what, url, lambda: _paged(
        lambda **page: web.search_for_instances(
            study_instance_uid=url.study_uid, series_instance_uid=url.series_uid,
            fields=INSTANCE_FIELDS, **page), "00080018"), creds_text=creds))
    out = []
    for row in rows or []:
        series, sop = json_uid(row, "0020000E"), json_uid(row, "00080018")
        if series and sop:
            out.append((series, sop))
    return out


PAGE = 1000


def _paged(search: Callable, key: str) -> list:
    """Every QIDO-RS result, a page (limit/offset) at a time.  Stops at a short page, or when
    a page brings nothing new (servers that ignore offset would otherwise loop forever)."""
    rows, seen = [], set()
    for _ in range(10000):
        page = search(limit=PAGE, offset=len(rows)) or []
        fresh = [r for r in page if json_uid(r, key) not in seen]
        seen.update(json_uid(r, key) for r in fresh)
        rows += fresh
        if len(page) < PAGE or not fresh:
            break
    return rows


def json_uid(row: dict, tag: str):
    return (row.get(tag, {}).get("Value") or [None])[0]


def retrieve_series(web, url: PacsURL, series_uid: str, expected: set, folder: str,
                    on_instance: Callable[[str], None]) -> None:
    """WADO-RS: stream one series into ``folder``, one file per instance named by its
    SOPInstanceUID.  A cut-off transfer is retried (bounded) for the instances still missing."""
    creds = web.dicomrecon_creds.describe()
    what = f"retrieving series {series_uid}"

    def attempt():
        def stream():
            for ds in web.iter_series(url.study_uid, series_uid, media_types=ANY_SYNTAX):
                sop = str(ds.SOPInstanceUID)
                if sop in expected and not os.path.exists(os.path.join(folder, sop + ".dcm")) \
                        and _complete(ds):
                    _write(ds, folder, sop)
                    on_instance(sop)
        _call(what, url, stream, creds_text=creds)
        left = [s for s in expected if not os.path.exists(os.path.join(folder, s + ".dcm"))]
        if left:  # the multipart body ended early: the server stopped or cut the connection
            raise Transient(f"{url.base}: the transfer of series {series_uid} ended with "
                            f"{len(left)} of {len(expected)} instance(s) missing")
    with_retries(attempt)


def _complete(ds) -> bool:
    """False for an instance whose native pixel data is shorter than its header says: the
    multipart part was cut off (the server stopped mid-transfer).  It is not cached, so it
    counts as missing and is fetched again, instead of being kept as a damaged file."""
    if "PixelData" not in ds or ds.file_meta.TransferSyntaxUID.is_compressed:
        return True  # encapsulated data cut short does not parse at all
    from ..header_model import native_pixel_bytes
    need = native_pixel_bytes(int(ds.Rows), int(ds.Columns),
                              int(ds.get("SamplesPerPixel", 1) or 1),
                              int(ds.get("NumberOfFrames", 1) or 1),
                              int(ds.get("BitsAllocated", 16) or 16))
    return len(ds.PixelData) >= need


def _write(ds, folder: str, sop: str) -> None:
    path = os.path.join(folder, sop + ".dcm")
    tmp = path + ".part"
    ds.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, path)


def store(web, url: PacsURL, files: list) -> "SendOutcome":
    """STOW-RS the files (one request per batch) and read the per-instance outcome."""
    import pydicom
    from .send import SendOutcome
    creds = web.dicomrecon_creds.describe()
    outcome = SendOutcome(url.display, total=len(files))
    batch = 64
    for i in range(0, len(files), batch):
        chunk = [pydicom.dcmread(f) for f in files[i:i + batch]]
        response = with_retries(lambda: _call(
            f"storing instances {i + 1}-{i + len(chunk)} of {len(files)}", url,
            lambda: _stow(web, chunk), creds_text=creds))
        outcome.add_stow(chunk, *response)
    return outcome


def _stow(web, datasets) -> tuple:
    """STOW-RS one batch: (response dataset, HTTP status).  A 400/409 body that lists
    per-instance outcomes is read, not raised."""
    import pydicom
    import requests
    try:
        return web.store_instances(datasets), 200
    except requests.exceptions.HTTPError as exc:
        resp = exc.response
        if resp is not None and resp.status_code in (400, 409) and resp.content:
            try:
                return pydicom.Dataset.from_json(resp.json()), resp.status_code
            except ValueError:
                pass
        raise


def search(web, url: PacsURL, level: str, filters: dict) -> list:
    """QIDO-RS search for studies or series (with the URL's study, if any)."""
    creds = web.dicomrecon_creds.describe()
    if level == "studies":
        fn = lambda: _paged(lambda **page: web.search_for_studies(  # noqa: E731
            search_filters=filters, **page), "0020000D")
    else:
        fn = lambda: _paged(lambda **page: web.search_for_series(  # noqa: E731
            study_instance_uid=url.study_uid, search_filters=filters, **page), "0020000E")
    return with_retries(lambda: _call(f"searching for {level}", url, fn, creds_text=creds))
