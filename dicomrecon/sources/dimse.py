"""DIMSE with pynetdicom: C-FIND, C-GET (no inbound port), C-MOVE to our own storage SCP, and
C-STORE.

An association that cannot be made becomes one line that says why: connection refused or no
answer (retried), or rejected by the server (wrong called or calling AE title; not retried).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import PacsError
from .retry import Transient, with_retries
from .urls import PacsURL

# Proposed for C-GET when C-FIND does not say which SOP classes a study holds (PS3.4 B.5).
COMMON_STORAGE = [
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",       # CT, Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",       # MR, Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.3",                                     # Enhanced MR Color
    "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130",     # PET, Enhanced PET
    "1.2.840.10008.5.1.4.1.1.20",                                      # NM
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.2",       # SC, MF grayscale SC
    "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4",     # MF grayscale/RGB SC
    "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",       # CR, DX
    "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.12.1",    # US, XA
    "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.481.2",  # SEG, RT Dose
]
GOOD, PENDING = 0x0000, (0xFF00, 0xFF01)
WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


@dataclass
class DimseOptions:
    calling_aet: str = "DICOMRECON"
    timeout: float = 30.0
    move_port: Optional[int] = None


def _pynetdicom():
    try:
        import pynetdicom
        return pynetdicom
    except ImportError:
        from .dicomweb import missing_extra
        raise missing_extra("pynetdicom") from None


def _ae(opts: DimseOptions):
    pnd = _pynetdicom()
    ae = pnd.AE(ae_title=opts.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = opts.timeout
    ae.connection_timeout = min(opts.timeout, 10)
    ae.maximum_pdu_size = 0
    return ae


def associate(ae, url: PacsURL, opts: DimseOptions, what: str, **kw):
    """An established association, or Transient/PacsError saying why not."""
    assoc = ae.associate(url.host, url.port, ae_title=url.called_aet, max_pdu=0, **kw)
    if assoc.is_established:
        return assoc
    where = f"{url.host}:{url.port}"
    if assoc.is_rejected:
        raise PacsError(f"dimse://{url.called_aet}@{where}: association rejected while {what} "
                        f"(called AE title '{url.called_aet}', calling AE title "
                        f"'{opts.calling_aet}')", hint="check both AE titles and that the server "
                        "knows the calling AE")
    try:
        socket.create_connection((url.host, url.port), timeout=min(opts.timeout, 5)).close()
    except ConnectionRefusedError:
        raise Transient(f"dimse://{url.called_aet}@{where}: connection refused while "
                        f"{what}") from None
    except OSError as exc:
        raise Transient(f"dimse://{url.called_aet}@{where}: cannot connect while {what} "
                        f"({exc.strerror or exc})") from None
    raise Transient(f"dimse://{url.called_aet}@{where}: association aborted or no answer "
                    f"within {opts.timeout:g} s while {what}")


def _status(status) -> Optional[int]:
    return int(status.Status) if status is not None and "Status" in status else None


def find(url: PacsURL, opts: DimseOptions, identifier, what: str) -> list:
    """C-FIND (Study Root): every matching identifier."""
    pnd = _pynetdicom()
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    def attempt():
        ae = _ae(opts)
        ae.add_requested_context(FIND)
        assoc = associate(ae, url, opts, what)
        out = []
        try:
            for status, ident in assoc.send_c_find(identifier, FIND):
                code = _status(status)
                if code is None:
                    raise Transient(f"{url.display}: association lost while {what}")
                if code in PENDING:
                    out.append(ident)
                elif code != GOOD:
                    raise PacsError(f"{url.display}: C-FIND failed while {what} (status "
                                    f"0x{code:04X}{_comment(status)})")
        finally:
            assoc.release()
        return out
    del pnd
    return with_retries(attempt)


def _comment(status) -> str:
    text = status.get("ErrorComment", "") if status is not None else ""
    return f": {text}" if text else ""


def find_instances(url: PacsURL, opts: DimseOptions) -> list:
    """(series UID, SOP instance UID) of every instance of the URL's study/series."""
    from pydicom import Dataset
    q = Dataset()
    q.QueryRetrieveLevel = "IMAGE"
    q.StudyInstanceUID = url.study_uid
    q.SeriesInstanceUID = url.series_uid or ""
    q.SOPInstanceUID = ""
    rows = find(url, opts, q, f"searching for the instances of study {url.study_uid}")
    return [(str(r.SeriesInstanceUID), str(r.SOPInstanceUID))
            for r in rows if r is not None and r.get("SOPInstanceUID")]


def study_sop_classes(url: PacsURL, opts: DimseOptions) -> list:
    """SOPClassesInStudy (0008,0062) from a study-level C-FIND (one answer; asking for each
    instance's SOPClassUID makes a server read every file).  Empty when the server does not
    say: C-GET then proposes COMMON_STORAGE."""
    from pydicom import Dataset
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = url.study_uid
    q.SOPClassesInStudy = ""
    rows = find(url, opts, q, f"asking for the SOP classes of study {url.study_uid}")
    found = rows[0].get("SOPClassesInStudy", []) if rows and rows[0] is not None else []
    return [str(c) for c in ([found] if isinstance(found, str) else found) if c]


class _Store:
    """The C-STORE handler that writes received instances, as sent, into a folder."""

    def __init__(self, folder_for: Callable[[str], str], expected: set, on_instance):
        self.folder_for, self.expected, self.on_instance = folder_for, expected, on_instance
        self.errors = []

    def missing(self) -> int:
        return sum(not os.path.exists(os.path.join(self.folder_for(s), s + ".dcm"))
                   for s in self.expected)

    def __call__(self, event):
        sop = str(event.request.AffectedSOPInstanceUID)
        if sop not in self.expected:
            return 0x0000  # not ours to keep (e.g. a server sending more than asked)
        try:
            folder = self.folder_for(sop)
            path = os.path.join(folder, sop + ".dcm")
            if not os.path.exists(path):
                with open(path + ".part", "wb") as f:
                    f.write(event.encoded_dataset(include_meta=True))
                os.replace(path + ".part", path)
                self.on_instance(sop)
        except OSError as exc:
            self.errors.append(f"{sop}: {exc.strerror or exc}")
            return 0xA700
        return 0x0000


def _series_identifier(url: PacsURL, series_uid: str):
    from pydicom import Dataset
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = url.study_uid
    q.SeriesInstanceUID = series_uid
    return q


def get_series(url: PacsURL, opts: DimseOptions, series_uid: str, sop_classes: list,
               store: _Store) -> None:
    """C-GET one series over one association (the server stores on the same association)."""
    pnd = _pynetdicom()
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    q = _series_identifier(url, series_uid)
    what = f"retrieving series {series_uid} (C-GET)"

    def attempt():
        ae = _ae(opts)
        ae.add_requested_context(GET)
        classes = list(dict.fromkeys([c for c in sop_classes if c] or COMMON_STORAGE))[:120]
        for sop, syntaxes in _storage_contexts(classes, pnd.ALL_TRANSFER_SYNTAXES):
            ae.add_requested_context(sop, syntaxes)
        roles = [pnd.build_role(sop, scp_role=True) for sop in classes]
        assoc = associate(ae, url, opts, what, ext_neg=roles,
                          evt_handlers=[(pnd.evt.EVT_C_STORE, store)])
        try:
            _check_retrieve(url, assoc.send_c_get(q, GET), what, store)
        finally:
            assoc.release()
    with_retries(attempt)


def _storage_contexts(classes: list, syntaxes: list) -> list:
    """(SOP class, [transfer syntaxes]) to propose for C-GET.  One context per transfer syntax
    when they fit in the 127 a association allows, so the server can send every instance as it
    is stored (a context with many syntaxes gets one, and the server transcodes to it)."""
    if len(classes) * len(syntaxes) <= 126:
        return [(c, [ts]) for c in classes for ts in syntaxes]
    return [(c, list(syntaxes)) for c in classes]


def _check_retrieve(url: PacsURL, responses, what: str, store: _Store) -> None:
    """Read C-GET/C-MOVE responses; failed sub-operations and lost associations are errors."""
    final = None
    for status, ident in responses:
        code = _status(status)
        if code is None:
            raise Transient(f"{url.display}: association lost while {what}")
        if code not in PENDING:
            final = (code, status, ident)
    code, status, ident = final
    failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
    if code == GOOD and not failed:
        if store.missing():
            raise Transient(f"{url.display}: {what} ended with {store.missing()} of "
                            f"{len(store.expected)} instance(s) missing")
        return
    done = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
    ours = f"; ours: {'; '.join(store.errors[:3])}" if store.errors else ""
    raise PacsError(f"{url.display}: {what}: {failed or 'some'} sub-operation(s) failed, "
                    f"{done} completed (status 0x{code:04X}{_comment(status)}{ours})",
                    hint="the server could not send those instances; check its log")


def move_series(url: PacsURL, opts: DimseOptions, series_uid: str, store: _Store) -> None:
    """C-MOVE one series to our own storage SCP on ``opts.move_port``; the server must know
    ``--calling-aet`` with this host and port."""
    pnd = _pynetdicom()
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE
    q = _series_identifier(url, series_uid)
    what = f"retrieving series {series_uid} (C-MOVE to port {opts.move_port})"

    def attempt():
        ae = _ae(opts)
        ae.supported_contexts = [pnd.build_context(c.abstract_syntax, pnd.ALL_TRANSFER_SYNTAXES)
                                 for c in pnd.AllStoragePresentationContexts]
        try:
            scp = ae.start_server(("", opts.move_port), block=False,
                                  evt_handlers=[(pnd.evt.EVT_C_STORE, store)])
        except OSError as exc:
            raise PacsError(f"--move-port {opts.move_port}: cannot listen "
                            f"({exc.strerror or exc})") from None
        try:
            ae.add_requested_context(MOVE)
            assoc = associate(ae, url, opts, what)
            try:
                _check_retrieve(url, assoc.send_c_move(q, opts.calling_aet, MOVE), what, store)
            finally:
                assoc.release()
        finally:
            scp.shutdown()
    with_retries(attempt)


def store_files(url: PacsURL, opts: DimseOptions, files: list):
    """C-STORE every file on one association; returns a SendOutcome with each status."""
    pnd = _pynetdicom()
    import pydicom
    from .send import SendOutcome
    outcome = SendOutcome(url.display, total=len(files))
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    pairs = {(str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)) for h in heads}
    what = f"sending {len(files)} instance(s) (C-STORE)"

    def attempt():
        ae = _ae(opts)
        for sop in sorted({p[0] for p in pairs}):
            ae.add_requested_context(sop, sorted({p[1] for p in pairs if p[0] == sop}))
        assoc = associate(ae, url, opts, what)
        try:
            accepted = {(c.abstract_syntax, c.transfer_syntax[0])
                        for c in assoc.accepted_contexts}
            for f, h in zip(files, heads):
                if outcome.done(str(h.SOPInstanceUID)):
                    continue
                pair = (str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID))
                if pair not in accepted:
                    outcome.rejected.append((str(h.SOPInstanceUID), (
                        f"{os.path.basename(f)}: the server accepts no SOP class {pair[0]} "
                        f"in transfer syntax {pair[1]} (presentation context rejected)")))
                    continue
                status = assoc.send_c_store(f)
                code = _status(status)
                if code is None:
                    raise Transient(f"{url.display}: association lost while {what} "
                                    f"({outcome.count_sent()} of {len(files)} sent)")
                outcome.add_status(f, str(h.SOPInstanceUID), code, _comment(status)[2:])
        finally:
            if assoc.is_established:
                assoc.release()
    with_retries(attempt)
    return outcome
