"""Source and destination URLs, parsed into a typed :class:`PacsURL`, and redaction.

* DICOMweb: ``http[s]://HOST[:PORT]/<root>/studies/<StudyUID>[/series/<SeriesUID>]``;
  ``<root>`` is everything before ``/studies/``. A destination is just
  ``http[s]://HOST[:PORT]/<root>``.
* DIMSE: ``dimse://CALLED_AET@HOST:PORT[/<StudyUID>[/<SeriesUID>]]``.

Credentials never come from a URL: a URL with ``user:password@`` (DICOMweb), a password
(DIMSE) or a query string is refused, and :func:`redact` strips them from any text shown.

>>> u = parse_url("https://pacs.example.org:8443/dicom-web/studies/1.2.3/series/4.5")
>>> (u.kind, u.base, u.study_uid, u.series_uid)
('dicomweb', 'https://pacs.example.org:8443/dicom-web', '1.2.3', '4.5')
>>> u = parse_url("dimse://ORTHANC@127.0.0.1:4242/1.2.3")
>>> (u.kind, u.called_aet, u.host, u.port, u.study_uid, u.series_uid)
('dimse', 'ORTHANC', '127.0.0.1', 4242, '1.2.3', None)
>>> redact("GET https://bob:s3cret@host/x?token=abc failed")
'GET https://***@host/x?*** failed'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from ..errors import DicomReconError, ExitCode

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_AET = re.compile(r"^[\x20-\x7e]{1,16}$")
SCHEMES = ("http", "https", "dimse")


class PacsUsageError(DicomReconError):
    """A malformed URL or a credential given where none may be given."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class PacsURL:
    """Where a study/series lives (or where to send): no credentials in any field."""

    kind: str                      # "dicomweb" or "dimse"
    host: str
    port: int
    base: str = ""                 # DICOMweb service root, e.g. http://host:8042/dicom-web
    called_aet: str = ""           # DIMSE only
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None

    @property
    def display(self) -> str:
        """The URL as the user gave it, without credentials (safe to print and record)."""
        if self.kind == "dicomweb":
            path = self.base
            if self.study_uid:
                path += f"/studies/{self.study_uid}"
            if self.series_uid:
                path += f"/series/{self.series_uid}"
            return path
        tail = "".join(f"/{u}" for u in (self.study_uid, self.series_uid) if u)
        return f"dimse://{self.called_aet}@{_host(self.host)}:{self.port}{tail}"

    def to_dict(self) -> dict:
        return {"url": self.display, "protocol": self.kind,
                "study_instance_uid": self.study_uid, "series_instance_uid": self.series_uid}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_url(text) -> bool:
    """True for a string that names a PACS source (``http``, ``https`` or ``dimse`` URL)."""
    return isinstance(text, str) and re.match(r"^(https?|dimse)://", text, re.I) is not None


def redact(text: str) -> str:
    """Remove URL userinfo and query strings from ``text`` (for messages and logs)."""
    text = re.sub(r"((?:https?|dimse)://)[^/@\s]*:[^/@\s]*@", r"\1***@", text, flags=re.I)
    return re.sub(r"(https?://[^\s?]*)\?\S*", r"\1?***", text, flags=re.I)


def parse_url(text: str, *, role: str = "source") -> PacsURL:
    """Parse a ``source`` URL (a study, optionally a series), a ``destination`` URL (no UIDs)
    or a ``query`` URL (UIDs optional)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise PacsUsageError(f"{redact(text)}: not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise PacsUsageError(f"{redact(text)}: not a PACS URL; use http[s]://HOST[:PORT]/ROOT/"
                             "studies/UID or dimse://AET@HOST:PORT/UID")
    if parts.query or parts.password is not None or (scheme != "dimse" and parts.username):
        raise PacsUsageError(f"{redact(text)}: credentials are never taken from the command "
                             "line", hint="set DICOMRECON_DICOMWEB_USER and "
                             "DICOMRECON_DICOMWEB_PASSWORD, or DICOMRECON_DICOMWEB_TOKEN, or "
                             "use ~/.netrc")
    if scheme == "dimse":
        return _parse_dimse(text, parts, port, role)
    return _parse_dicomweb(text, parts, port, role)


def _uids(text: str, segments: list) -> list:
    for uid in segments:
        if not _UID.match(uid) or len(uid) > 64:
            raise PacsUsageError(f"{redact(text)}: {uid!r} is not a valid DICOM UID (digits "
                                 "and dots, at most 64 characters)")
    return segments


def _parse_dicomweb(text, parts, port, role) -> PacsURL:
    path = parts.path.rstrip("/")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    netloc = f"{parts.scheme.lower()}://{_host(parts.hostname)}" + (
        f":{parts.port}" if parts.port else "")
    if role == "destination" or (role == "query" and "studies" not in path.split("/")):
        if "studies" in path.split("/"):
            raise PacsUsageError(f"{redact(text)}: a destination is the DICOMweb root "
                                 "(http[s]://HOST[:PORT]/ROOT), without /studies/...")
        return PacsURL("dicomweb", parts.hostname, port, base=netloc + path)
    m = re.match(r"^(.*?)/studies/([^/]+)(?:/series/([^/]+))?$", path)
    if not m:
        raise PacsUsageError(f"{redact(text)}: a DICOMweb source must end in "
                             "/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]")
    root, study, series = m.groups()
    _uids(text, [u for u in (study, series) if u])
    return PacsURL("dicomweb", parts.hostname, port, base=netloc + root, study_uid=study,
                   series_uid=series)


def _parse_dimse(text, parts, port, role) -> PacsURL:
    aet = parts.username or ""
    if not _AET.match(aet) or "\\" in aet or not aet.strip():
        raise PacsUsageError(f"{redact(text)}: a DIMSE URL needs the called AE title "
                             "(1-16 characters): dimse://AET@HOST:PORT/...")
    if not port:
        raise PacsUsageError(f"{redact(text)}: a DIMSE URL needs a port: dimse://AET@HOST:PORT")
    segments = [s for s in parts.path.split("/") if s]
    if role == "destination" and segments:
        raise PacsUsageError(f"{redact(text)}: a C-STORE destination is dimse://AET@HOST:PORT "
                             "(no UIDs)")
    if len(segments) > 2 or (role == "source" and not segments):
        raise PacsUsageError(f"{redact(text)}: a DIMSE source is dimse://AET@HOST:PORT/"
                             "<StudyInstanceUID>[/<SeriesInstanceUID>]")
    _uids(text, segments)
    return PacsURL("dimse", parts.hostname, port, called_aet=aet,
                   study_uid=segments[0] if segments else None,
                   series_uid=segments[1] if len(segments) > 1 else None)
