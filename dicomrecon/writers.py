"""Volume writers: NIfTI-1 (.nii, .nii.gz), NRRD (.nrrd) and MetaImage (.mha), plus JSON.

Each writer streams the array's bytes after a small header, so a volume is never copied in
memory; each writes to a temporary file in the destination folder and renames it into place,
so a reader never sees a half-written file.  Temporaries follow one naming pattern
(:data:`TEMP_SUFFIX`), and :func:`remove_stale_temporaries` removes those a killed run left.  gzip is ISA-L's (``isal``), several times faster
than zlib at the same format.

The array is (nz, ny, nx) in C order, which is exactly the x-fastest order all three formats
store.  ``affine`` maps (x, y, z) index to LPS mm.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Optional

import numpy as np

from .affines import LPS_TO_RAS, decompose_affine, is_orthogonal
from .errors import OutputError

FORMATS = ("nii.gz", "nii", "nrrd", "mha")

_NIFTI_CODES = {
    np.dtype("uint8"): 2, np.dtype("int16"): 4, np.dtype("int32"): 8, np.dtype("float32"): 16,
    np.dtype("float64"): 64, np.dtype("int8"): 256, np.dtype("uint16"): 512,
    np.dtype("uint32"): 768, np.dtype("int64"): 1024, np.dtype("uint64"): 1280,
}
_NRRD_TYPES = {
    "int8": "signed char", "uint8": "uchar", "int16": "short", "uint16": "ushort",
    "int32": "int", "uint32": "uint", "int64": "longlong", "uint64": "ulonglong",
    "float32": "float", "float64": "double",
}
_MET_TYPES = {
    "int8": "MET_CHAR", "uint8": "MET_UCHAR", "int16": "MET_SHORT", "uint16": "MET_USHORT",
    "int32": "MET_INT", "uint32": "MET_UINT", "int64": "MET_LONG_LONG",
    "uint64": "MET_ULONG_LONG", "float32": "MET_FLOAT", "float64": "MET_DOUBLE",
}

CHUNK = 1 << 24  # 16 MiB slices of the array per write call


def extension(fmt: str) -> str:
    if fmt not in FORMATS:
        raise OutputError(f"unknown output format '{fmt}', choose one of {', '.join(FORMATS)}")
    return "." + fmt


def is_inside(child: str, parent: str) -> bool:
    """``child`` is ``parent`` or lies below it (symbolic links resolved)."""
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def make_writable_folder(folder: str, what: str = "output folder") -> None:
    """Create ``folder`` if needed and check it can be written; OutputError saying why not."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the {what} ({exc.strerror})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: the {what} is not writable")


# ----------------------------------------------------------------------------- temporaries
#: Every temporary file or folder dicomrecon writes is named ``.NAME.PID.RANDOM`` +
#: :data:`TEMP_SUFFIX`, beside its final ``NAME``: hidden, with the writer's process id and
#: 8 random characters (tempfile's alphabet).  A folder moved aside by ``export --force``
#: while its replacement is renamed in ends in :data:`OLD_SUFFIX` instead.
TEMP_SUFFIX = ".dicomrecon-part"
OLD_SUFFIX = ".dicomrecon-old"
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}"
                      r"(?:\.dicomrecon-part|\.dicomrecon-old)$")
#: Names written by dicomrecon 0.x before the pattern above (no process id).
_LEGACY_RE = re.compile(r"^(?:\.dicomrecon-[a-z0-9_]{8}\.part|"
                        r"\.(?P<name>.+)\.[a-z0-9_]{8}\.dicomrecon-(?:part|old))$")
#: A legacy temporary modified this recently may belong to a running process: kept.
LEGACY_MIN_AGE_S = 300


def temp_prefix(name: str) -> str:
    """The ``prefix`` for tempfile.mkstemp / mkdtemp of a temporary for ``name``."""
    return f".{name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2 ** 31  # another user's process, or not a pid at all
    return True


def is_stale_temporary(folder: str, entry: str, name: Optional[str] = None) -> bool:
    """``entry`` in ``folder`` is a temporary of ours whose writer is gone.

    Ours: its name matches the pattern of :data:`TEMP_SUFFIX` exactly (or the legacy
    ``.dicomrecon-XXXXXXXX.part``), and, with ``name``, is a temporary for that final name.
    Gone: its process id is not a running process on this machine (the current process's own
    temporaries are never stale); a legacy name without a process id must be untouched for
    :data:`LEGACY_MIN_AGE_S` seconds.
    """
    m = _TEMP_RE.match(entry)
    if m:
        pid = int(m["pid"])
        return (name is None or m["name"] == name) and pid != os.getpid() and not _alive(pid)
    m = _LEGACY_RE.match(entry)
    if not m or (name is not None and m["name"] != name):
        return False
    try:
        age = time.time() - os.lstat(os.path.join(folder, entry)).st_mtime
    except OSError:
        return False
    return age >= LEGACY_MIN_AGE_S


def remove_stale_temporaries(folder: str, name: Optional[str] = None, *,
                             report: Optional[Callable[[str], None]] = None) -> list:
    """Remove the temporaries an interrupted (e.g. killed) dicomrecon run left in ``folder``.

    Only entries :func:`is_stale_temporary` accepts are touched (``name``: only those for the
    final name ``name``).  Each removal is passed to ``report`` as one line (default: printed
    on stderr); returns the paths removed.  Errors (a folder that vanished, no permission) skip
    that entry.
    """
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        if not is_stale_temporary(folder, entry, name):
            continue
        path = os.path.join(folder, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            continue
        removed.append(path)
        line = f"removed {path}: a temporary left by an interrupted dicomrecon run"
        if report is None:
            print(f"dicomrecon: {line}", file=sys.stderr)
        else:
            report(line)
    return removed


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary is removed on any failure, including an interrupting signal (see
    :mod:`dicomrecon.signals`).
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({exc.strerror})")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _open_out(tmp: str, gz: bool):
    if gz:
        from isal import igzip_threaded
        return igzip_threaded.open(tmp, "wb", compresslevel=2, threads=max(1, min(4, os.cpu_count() or 1)))
    # "r+b", not "wb": the temporary is new and empty, and truncating it (O_TRUNC) makes ext4
    # (auto_da_alloc) start write-back of the whole file at close: measured 0.15-0.2 s of the
    # 500 MB benchmark volume, spent before convert can exit.
    return open(tmp, "r+b")


def _write_array(fp, array: np.ndarray, progress=None, hasher=None) -> None:
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.byteorder == ">":
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    step = max(1, CHUNK // max(1, flat.itemsize))
    for i in range(0, flat.size, step):
        chunk = memoryview(flat[i:i + step]).cast("B")
        if hasher is not None:
            hasher.update(chunk)
        fp.write(chunk)
        if progress:
            progress(min(flat.size, i + step) * flat.itemsize, flat.size * flat.itemsize)


def write_volume(path: str, array: np.ndarray, affine_lps: np.ndarray, fmt: str, *,
                 description: str = "dicomrecon", rgb: bool = False, progress=None,
                 tr: Optional[float] = None, digest: bool = False) -> Optional[str]:
    """Write one volume atomically in ``fmt`` (one of :data:`FORMATS`).

    ``array`` is (nz, ny, nx); (nt, nz, ny, nx) for a 4D series (NIfTI only); or, with
    ``rgb``, (nz, ny, nx, 3) uint8 colour.  ``progress(bytes done, bytes total)`` is called as
    the data is written.  ``tr`` (seconds): the 4th axis is time, sampled every ``tr``
    (NIfTI pixdim[4], xyzt_units mm + s).  With ``digest``, returns the sha256 of the file,
    hashed from the bytes as they are written (uncompressed formats; None for nii.gz, whose
    bytes come out of the compressor).
    """
    spatial = array.shape[:3] if rgb else array.shape[-3:]
    if rgb and (array.ndim != 4 or array.shape[3] != 3 or array.dtype != np.uint8):
        raise OutputError(f"{path}: an RGB volume must be (nz, ny, nx, 3) uint8, got "
                          f"{array.shape} {array.dtype}")
    if not rgb and array.ndim not in (3, 4):
        raise OutputError(f"{path}: expected a 3D or 4D array, got shape {array.shape}")
    if array.dtype not in _NIFTI_CODES:
        raise OutputError(f"{path}: cannot write pixel type {array.dtype}")
    nt = array.shape[0] if (array.ndim == 4 and not rgb) else None
    if nt and fmt not in ("nii", "nii.gz"):
        raise OutputError(f"{path}: 4D volumes are written as NIfTI (nii, nii.gz) only: ITK "
                          "cannot read a spatial NRRD or MHA with a time axis")
    if fmt in ("nii", "nii.gz"):
        header = nifti_header(spatial, array.dtype, affine_lps, description, nt=nt, rgb=rgb, tr=tr)
    elif fmt == "nrrd":
        header = nrrd_header(spatial, array.dtype, affine_lps, rgb=rgb)
    elif fmt == "mha":
        _check_orthogonal(affine_lps, "MetaImage (.mha)", path)
        header = mha_header(spatial, array.dtype, affine_lps, rgb=rgb)
    else:
        extension(fmt)  # raises: not a format
    hasher = hashlib.sha256(header) if digest and fmt != "nii.gz" else None
    try:
        with atomic_path(path) as tmp:
            with _open_out(tmp, fmt == "nii.gz") as fp:
                fp.write(header)
                _write_array(fp, array, progress, hasher)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})")
    return hasher.hexdigest() if hasher is not None else None


def write_json(path: str, obj, *, digest: bool = False) -> Optional[str]:
    """Write ``obj`` as :func:`json_text` atomically; with ``digest``, return the sha256 of the
    bytes written."""
    data = json_text(obj).encode("utf-8")
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fp:
                fp.write(data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})")
    return hashlib.sha256(data).hexdigest() if digest else None


def json_text(obj) -> str:
    """``obj`` as indented JSON, with each list of scalars, and each element of a list that
    holds no container deeper than a list of scalars, on one line: an affine row, a slice
    record.  Those lines come from json's C encoder; ``json.dump(indent=2)`` encodes everything
    in Python instead (measured: 0.7 of 4.2 CPU seconds of converting a 100-series archive, whose
    sidecars list 13,373 slice records)."""
    out: list = []
    _emit(obj, 0, out)
    out.append("\n")
    return "".join(out)


_ONE_LINE = json.JSONEncoder(default=lambda o: _json_default(o), separators=(", ", ": "))
_SCALARS = (str, int, float, bool, type(None))


def _emit(o, depth: int, out: list) -> None:
    pad = "  " * (depth + 1)
    if isinstance(o, dict) and o:
        items = [f"{pad}{_ONE_LINE.encode(_key(k))}: " for k in o]
        out.append("{\n")
        for i, (head, v) in enumerate(zip(items, o.values())):
            out.append(head)
            _emit(v, depth + 1, out)
            out.append(",\n" if i < len(items) - 1 else "\n")
        out.append("  " * depth + "}")
    elif isinstance(o, (list, tuple)) and o and not all(isinstance(v, _SCALARS) for v in o):
        out.append("[\n")
        for i, v in enumerate(o):
            out.append(pad)
            if _flat(v):
                out.append(_ONE_LINE.encode(v))
            else:
                _emit(v, depth + 1, out)
            out.append(",\n" if i < len(o) - 1 else "\n")
        out.append("  " * depth + "]")
    else:
        out.append(_ONE_LINE.encode(o))


def _flat(v) -> bool:
    """A list element written on one line: a scalar, a list of scalars, or a dict whose values
    are those."""
    def leaf(x):
        return isinstance(x, _SCALARS) or (isinstance(x, (list, tuple))
                                           and all(isinstance(y, _SCALARS) for y in x))
    if isinstance(v, dict):
        return all(leaf(x) for x in v.values())
    return leaf(v)


def _key(k) -> str:
    """A dict key as json writes it (json turns True into "true", 1.5 into "1.5")."""
    if isinstance(k, str):
        return k
    return json.dumps(k) if isinstance(k, (bool, type(None), float)) else str(k)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    return str(o)


def _check_orthogonal(affine, what, path):
    if not is_orthogonal(decompose_affine(affine)[2]):
        raise OutputError(f"{path}: {what} cannot hold a sheared (non-orthogonal) grid; "
                          "write NIfTI or NRRD, or resample")


# ----------------------------------------------------------------------------- NIfTI-1
def quaternion_from_rotation(r: np.ndarray):
    """NIfTI quaternion (b, c, d) and qfac of a (3, 3) rotation with orthonormal columns.

    A reflection (det < 0) is stored as qfac = -1 with the third column negated, as the
    NIfTI-1 standard (and nifti1_io's ``nifti_mat44_to_quatern``) does.
    """
    r = np.array(r, dtype=float)
    qfac = 1.0
    if np.linalg.det(r) < 0:
        qfac = -1.0
        r[:, 2] = -r[:, 2]
    # Shepperd's method on a proper rotation
    t = np.trace(r)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        a, b = 0.25 * s, (r[2, 1] - r[1, 2]) / s
        c, d = (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        a, b = (r[2, 1] - r[1, 2]) / s, 0.25 * s
        c, d = (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        a, b = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s
        c, d = 0.25 * s, (r[1, 2] + r[2, 1]) / s
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        a, b = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s
        c, d = (r[1, 2] + r[2, 1]) / s, 0.25 * s
    if a < 0:
        b, c, d = -b, -c, -d
    return (b, c, d), qfac


def nifti_header(shape_zyx, dtype, affine_lps, description: str = "", *, nt=None,
                 rgb: bool = False, tr: Optional[float] = None) -> bytes:
    """348-byte NIfTI-1 header plus the 4-byte empty extension flag (vox_offset 352).

    sform holds the exact RAS affine (sform_code 1, scanner).  qform (code 1) holds the same
    grid when it is orthogonal; for a sheared grid, which a quaternion cannot express, the
    qform code is 0 and only the sform is valid.  A 4D file whose 4th axis is time has
    pixdim[4] = ``tr`` (the repetition time, s) and xyzt_units = mm + s (2 | 8).
    """
    nz, ny, nx = shape_zyx
    dtype = np.dtype(dtype)
    ras = LPS_TO_RAS @ np.asarray(affine_lps, dtype=float)
    origin, spacing, direction = decompose_affine(ras)
    orthogonal = is_orthogonal(direction)
    (qb, qc, qd), qfac = quaternion_from_rotation(direction) if orthogonal else ((0, 0, 0), 1.0)
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<c", h, 38, b"r")
    struct.pack_into("<8h", h, 40, 4 if nt else 3, nx, ny, nz, nt or 1, 1, 1, 1)
    code, bits = (128, 24) if rgb else (_NIFTI_CODES[dtype], dtype.itemsize * 8)  # 128: RGB24
    struct.pack_into("<hh", h, 70, code, bits)
    timed = bool(nt) and tr is not None and tr > 0
    struct.pack_into("<8f", h, 76, qfac, *spacing, (tr if timed else 1.0) if nt else 0.0, 0, 0, 0)
    struct.pack_into("<f", h, 108, 352.0)                 # vox_offset
    struct.pack_into("<ff", h, 112, 1.0, 0.0)             # scl_slope, scl_inter: identity
    struct.pack_into("<B", h, 123, 2 | 8 if timed else 2)  # xyzt_units: mm (+ s)
    desc = description.encode("ascii", "replace")[:79]
    h[148:148 + len(desc)] = desc
    struct.pack_into("<hh", h, 252, 1 if orthogonal else 0, 1)  # qform_code, sform_code
    struct.pack_into("<6f", h, 256, qb, qc, qd, *origin)
    struct.pack_into("<12f", h, 280, *ras[:3, :4].ravel())
    h[344:348] = b"n+1\0"
    return bytes(h)


# ----------------------------------------------------------------------------- NRRD / MHA
def _num(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def nrrd_header(shape_zyx, dtype, affine_lps, *, rgb: bool = False) -> bytes:
    nz, ny, nx = shape_zyx
    a = np.asarray(affine_lps, dtype=float)
    dirs = " ".join("(" + ",".join(_num(v) for v in a[:3, i]) + ")" for i in range(3))
    sizes, kinds = f"{nx} {ny} {nz}", "domain domain domain"
    if rgb:
        sizes, kinds, dirs = f"3 {sizes}", f"RGB-color {kinds}", f"none {dirs}"
    lines = [
        "NRRD0004",
        "# written by dicomrecon; format: http://teem.sourceforge.net/nrrd/format.html",
        f"type: {_NRRD_TYPES[np.dtype(dtype).name]}",
        f"dimension: {4 if rgb else 3}",
        "space: left-posterior-superior",
        f"sizes: {sizes}",
        f"space directions: {dirs}",
        f"kinds: {kinds}",
        "endian: little",
        "encoding: raw",
        "space origin: (" + ",".join(_num(v) for v in a[:3, 3]) + ")",
    ]
    return ("\n".join(lines) + "\n\n").encode("ascii")


def mha_header(shape_zyx, dtype, affine_lps, *, rgb: bool = False) -> bytes:
    nz, ny, nx = shape_zyx
    origin, spacing, direction = decompose_affine(affine_lps)
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "CompressedData = False",
        "TransformMatrix = " + " ".join(_num(v) for v in direction.T.ravel()),
        "Offset = " + " ".join(_num(v) for v in origin),
        "CenterOfRotation = 0 0 0",
        "ElementSpacing = " + " ".join(_num(v) for v in spacing),
        f"DimSize = {nx} {ny} {nz}",
    ] + (["ElementNumberOfChannels = 3"] if rgb else []) + [
        f"ElementType = {_MET_TYPES[np.dtype(dtype).name]}",
        "ElementDataFile = LOCAL",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def output_format(path: str) -> Optional[str]:
    for fmt in FORMATS:  # nii.gz before nii
        if path.endswith("." + fmt):
            return fmt
    return None
