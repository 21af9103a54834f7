"""Where each series goes: ``--layout`` templates, consistent with ``convert --name``.

A layout is a path template relative to OUTDIR.  Its last component is the file-name template
that ``convert --name`` takes (the same tokens, the same group suffixes ``_g2``, ``_p1``,
``_4D``); the components before it are folders.  Study tokens (``%a``, ``%s``, ``%y``) may be
used anywhere.  Values are cleaned as ``convert`` cleans names (letters, digits, ``._-``;
everything else becomes ``_``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import DicomReconError, ExitCode

#: Tokens of the layout that are not convert --name tokens (those are all accepted too).
STUDY_TOKENS = {
    "%a": "StudyDate (0008,0020)",
    "%s": "StudyID (0020,0010), or the last 8 characters of StudyInstanceUID when it is empty",
    "%y": "StudyInstanceUID (0020,000D)",
}
#: OUTDIR/<PatientID>/<StudyDate>_<StudyID or short StudyInstanceUID>/<convert's name>
#: (the last component is conversion.DEFAULT_NAME; a test checks it).
DEFAULT_LAYOUT = "%i/%a_%s/%n_%d"
#: --retries: tries again of a series whose worker process died (here, light to import for
#: the CLI's help; the engines use it).
DEFAULT_RETRIES = 2
#: What the local pool's fork server imports once, rather than each worker at its first series
#: (here, light to import: the batch command starts the fork server before its own imports).
FORKSERVER_PRELOAD = ["dicomrecon.batch.task", "dicomrecon.conversion", "dicomrecon.engine.read"]


def fork_server_context():
    """The multiprocessing context of the local pool: a fork server that imports
    :data:`FORKSERVER_PRELOAD` once."""
    import multiprocessing as mp
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
    return ctx


def start_fork_server() -> None:
    """Start the local pool's fork server now, in the background: it imports the conversion
    code (numpy and all, ~0.3 s) while this process imports its own (the same), rather than
    after, when the pool needs its first worker."""
    from multiprocessing import forkserver
    fork_server_context()
    forkserver.ensure_running()


_STUDY_TOKENS = tuple(STUDY_TOKENS)


def layout_tokens() -> dict:
    """Every layout token and what it stands for: convert's NAME_TOKENS and the study tokens."""
    from ..naming import NAME_TOKENS
    return {**NAME_TOKENS, **STUDY_TOKENS}


class LayoutError(DicomReconError):
    exit_code = ExitCode.USAGE


@dataclass
class Placement:
    """Where one series is written: a folder below OUTDIR and convert's name template."""

    folder: str                   # relative to OUTDIR, "/"-separated
    name: str                     # convert --name template for this series


def check_layout(template: str) -> list:
    """The template's components; LayoutError naming the problem when it is unusable."""
    parts = template.strip().split("/")
    if template.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise LayoutError(f"--layout '{template}': must be a relative path of non-empty "
                          "components without '.' or '..' (e.g. '%i/%a_%s/%n_%d')")
    tokens = layout_tokens()
    unknown = sorted(set(re.findall(r"%.", template)) - set(tokens))
    if unknown:
        raise LayoutError(f"--layout '{template}': unknown token(s) {', '.join(unknown)}; the "
                          "tokens are " + ", ".join(tokens))
    if any("%g" in p for p in parts[:-1]):
        raise LayoutError(f"--layout '{template}': %g (group index) can only be used in the "
                          "file name, the last component")
    return parts


def study_values(series, study_id: str) -> dict:
    from ..naming import clean_name as _clean
    f = series.first
    uid = f.study_instance_uid or ""
    return {"%a": _clean(f.text.study_date or "") or "nodate",
            "%s": _clean(study_id) or _clean(uid[-8:]) or "nostudy",
            "%y": _clean(uid) or "nostudy"}


def _folder(series, parts: list, values: dict) -> str:
    from ..naming import output_stem
    out = []
    for part in parts:
        text = re.sub("|".join(_STUDY_TOKENS), lambda m: values[m.group(0)], part)
        name = output_stem(series, series.groups[0], text, group_suffix=False)
        if name == "series" and "series" not in part:  # every value empty
            name = "unknown"
        out.append(name)
    return "/".join(out)


def place(series_list: list, template: str, study_ids: dict) -> dict:
    """SeriesInstanceUID -> :class:`Placement` for every series.

    Names never collide: two series whose names would be equal in one folder (the same
    SeriesNumber and SeriesDescription, say) both get the first 8 hex digits of the sha1 of
    their SeriesInstanceUID appended, which is stable from run to run.
    """
    from ..naming import output_stem
    parts = check_layout(template)
    out, stems = {}, {}
    for s in series_list:
        values = study_values(s, study_ids.get(s.uid, ""))
        name = re.sub("|".join(_STUDY_TOKENS), lambda m: values[m.group(0)], parts[-1])
        p = Placement(_folder(s, parts[:-1], values), name)
        out[s.uid] = p
        stem = output_stem(s, s.groups[0], name, group_suffix=False)
        stems.setdefault((p.folder, stem.lower()), []).append(s.uid)
    for uids in stems.values():
        if len(uids) > 1:
            for uid in uids:
                out[uid].name += "_" + hashlib.sha1(uid.encode()).hexdigest()[:8]
    return out


def read_study_ids(paths: list) -> dict:
    """``{path: StudyID (0020,0010)}`` ('' when absent or unreadable): GDCM's scanner for plain
    values, so that readers of a CT archive never import pydicom (0.2 s each); pydicom for the
    rest (non-ASCII, several values), which reads them as it always did."""
    from ..engine.gdcm_headers import read_plain_texts
    out = read_plain_texts(paths, "StudyID", 0x00200010)
    return {p: out[p] if p in out else read_study_id(p) for p in paths}


def read_study_id(path: str) -> str:
    """StudyID (0020,0010) of a file ('' when absent or unreadable), read by pydicom."""
    import pydicom
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyID"])
        return str(ds.get("StudyID", "") or "")
    except Exception:  # already read once by discovery; a failure here only loses the token
        return ""
