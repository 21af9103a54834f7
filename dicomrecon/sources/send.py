"""Send a folder of instances (an export) to a PACS: STOW-RS or C-STORE, and account for
every instance: accepted, accepted with a warning, rejected (with the reason), or not sent."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import PacsError
from .urls import PacsURL, parse_url

# PS3.18 table I.2-1 / PS3.4 Annex B failure reasons and C-STORE statuses worth naming.
REASONS = {
    0x0110: "processing failure", 0x0112: "no such object instance",
    0x0122: "SOP class not supported", 0x0124: "not authorized",
    0xA700: "out of resources", 0xA900: "data set does not match SOP class",
    0xC000: "cannot understand", 0xA7FF: "out of resources", 0x0211: "unrecognized operation",
    0xC122: "transfer syntax not supported",
}


@dataclass
class SendOutcome:
    destination: str
    total: int
    accepted: list = field(default_factory=list)    # SOPInstanceUIDs
    warnings: list = field(default_factory=list)    # (SOPInstanceUID, text)
    rejected: list = field(default_factory=list)    # (SOPInstanceUID, text)

    def done(self, sop: str) -> bool:
        return sop in self.accepted or any(s == sop for s, _ in self.rejected)

    def count_sent(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def add_status(self, path: str, sop: str, code: int, comment: str = "") -> None:
        """A C-STORE response status."""
        text = REASONS.get(code, "") + (f": {comment}" if comment else "")
        if code == 0x0000:
            self.accepted.append(sop)
        elif code in (0xB000, 0xB006, 0xB007, 0x0001):
            self.accepted.append(sop)
            self.warnings.append((sop, f"warning 0x{code:04X} {text}".strip()))
        else:
            self.rejected.append((sop, f"{os.path.basename(path)}: status 0x{code:04X} "
                                       f"{text}".strip()))

    def add_stow(self, datasets: list, response, http_status: int = 200) -> None:
        """A STOW-RS response: ReferencedSOPSequence (stored) and FailedSOPSequence."""
        seen = set()
        for item in (response.get("ReferencedSOPSequence", []) if response else []):
            sop = str(item.get("ReferencedSOPInstanceUID", ""))
            seen.add(sop)
            self.accepted.append(sop)
            if "WarningReason" in item:
                code = int(item.WarningReason)
                self.warnings.append((sop, f"warning 0x{code:04X} {REASONS.get(code, '')}"))
        for item in (response.get("FailedSOPSequence", []) if response else []):
            sop = str(item.get("ReferencedSOPInstanceUID", "?"))
            seen.add(sop)
            code = int(item.get("FailureReason", 0) or 0)
            self.rejected.append((sop, f"failure reason 0x{code:04X} "
                                       f"{REASONS.get(code, '')}".strip()))
        for ds in datasets:
            sop = str(ds.get("SOPInstanceUID", "?"))
            if sop not in seen:
                self.rejected.append((sop, f"HTTP {http_status}: the STOW-RS response gives no "
                                      "status for this instance; assume it was not stored"))

    @property
    def ok(self) -> bool:
        return len(self.accepted) == self.total and not self.rejected

    def lines(self) -> list:
        out = [f"sent {len(self.accepted)} of {self.total} instance(s) to {self.destination}"
               + ("" if self.ok else f"; {len(self.rejected)} rejected, "
                  f"{self.total - self.count_sent()} not sent")]
        out += [f"warning {sop}: {why}" for sop, why in self.warnings]
        out += [f"rejected {sop}: {why}" for sop, why in self.rejected]
        return out


def send_files(dest: str, files: list, *, timeout: float = 30.0, ca_bundle=None,
               calling_aet: str = "DICOMRECON") -> SendOutcome:
    """Send ``files`` to ``dest`` (a DICOMweb root or dimse://AET@HOST:PORT).

    A failure that stops the transfer raises PacsError saying how many were sent first."""
    url = dest if isinstance(dest, PacsURL) else parse_url(dest, role="destination")
    files = sorted(files)
    try:
        if url.kind == "dicomweb":
            from . import dicomweb
            web = dicomweb.client(url, dicomweb.WebOptions(timeout, ca_bundle))
            return dicomweb.store(web, url, files)
        from . import dimse
        return dimse.store_files(url, dimse.DimseOptions(calling_aet, timeout), files)
    except PacsError as exc:
        raise PacsError(f"{exc} - the series was not completely sent; the server may hold "
                        "part of it") from None
