"""Decode the pixels of a sorted group into one (nz, ny, nx) array of real-world values.

Two paths, one value rule:

* uncompressed files: the stored bytes are read straight from the offset the header reader
  found into the output array (no copy per slice, no decoder);
* compressed files: pydicom decodes each frame through GDCM (the codecs SimpleITK uses) or its
  own RLE decoder.

Both give the *stored* integers; :func:`plan_values` then decides the output type:

* every slice shares one integer RescaleSlope/Intercept: an exact integer type, the smallest that
  holds the rescaled range (CT comes out in HU);
* they differ between slices, or are not integers: float32, each slice with its own.

MONOCHROME1 is never inverted: the value is the stored value, and the sidecar records the
PhotometricInterpretation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .errors import RefusedError
from .headers import SliceHeader

ProgressFn = Optional[Callable[[int, int], None]]


class DecodeError(RefusedError):
    """Pixel data that cannot be decoded or turned into finite values: the group is refused
    (a :class:`RefusedError`, exit 5, from the API; convert refuses the volume and goes on).
    The message names the file, the tag and the reason; ``findings`` holds it as a finding."""

    def __init__(self, message: str, *, tag: str = "(7FE0,0010)", code: str = "DECODE_FAILED"):
        from .geometry import ERROR, Finding
        self.tag = tag
        super().__init__(message, [Finding(code, ERROR, message, tag)])


@dataclass
class ValuePlan:
    mode: str                 # "none", "uniform" or "per-slice"
    slope: Optional[float]
    intercept: Optional[float]
    stored_dtype: np.dtype

    def to_dict(self) -> dict:
        return {"rescale": self.mode, "slope": self.slope, "intercept": self.intercept,
                "stored_dtype": str(self.stored_dtype)}


def stored_dtype(h: SliceHeader) -> np.dtype:
    kind = "i" if h.pixel_representation else "u"
    return np.dtype(f"{kind}{h.bits_allocated // 8}")


def plan_values(slices: list) -> ValuePlan:
    pairs = {(h.rescale_slope, h.rescale_intercept) for h in slices}
    dt = stored_dtype(slices[0])
    if len(pairs) > 1:
        return ValuePlan("per-slice", None, None, dt)
    slope, intercept = pairs.pop()
    if slope == 1.0 and intercept == 0.0:
        return ValuePlan("none", 1.0, 0.0, dt)
    return ValuePlan("uniform", slope, intercept, dt)


def _is_int(v: float) -> bool:
    return float(v).is_integer()


INT_TYPES = [np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")]


def _fit_int(lo: float, hi: float, prefer_size: int) -> Optional[np.dtype]:
    """The integer type that holds [lo, hi] (of ``prefer_size`` bytes when one does), or None
    when none does (e.g. a RescaleIntercept of 1e20)."""
    fits = [t for t in INT_TYPES if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max]
    same = [t for t in fits if t.itemsize == prefer_size]
    return (same or fits or [None])[0]


def decode(slices: list, *, progress: ProgressFn = None) -> tuple:
    """Return ``(array (nz, ny, nx), ValuePlan, notes)`` for slices already in output order.

    Raises :class:`DecodeError` when a file cannot be decoded, or a value is not finite."""
    try:
        out, plan, notes = _decode(slices, progress)
    finally:
        _LAST_DECODED.clear()  # a decoded multi-frame file is kept only while one group decodes
    check_finite(out, slices)
    return out, plan, notes


def check_finite(array: np.ndarray, slices: list) -> None:
    """Refuse an array with a NaN or infinite voxel, naming the first slice that has one."""
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return
    bad = np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1)) \
        if len(array) == len(slices) else [0]
    h = slices[int(bad[0])] if len(array) == len(slices) else slices[0]
    raise DecodeError(
        f"{h.path}: non-finite values (NaN or Inf) after applying (0028,1053) 'Rescale Slope' "
        f"'{h.rescale_slope:g}' and (0028,1052) 'Rescale Intercept' '{h.rescale_intercept:g}' "
        f"in {len(bad)} slice(s); refusing rather than writing them", tag="(0028,1053)")


def _decode(slices: list, progress: ProgressFn) -> tuple:
    plan = plan_values(slices)
    raw_dt = plan.stored_dtype
    nz, ny, nx = len(slices), slices[0].rows, slices[0].columns
    if slices[0].samples_per_pixel == 3:
        return _decode_rgb(slices, progress), ValuePlan("none", None, None, raw_dt), [
            "8-bit colour kept as RGB triples (compressed YBR decoded to RGB)"]
    per_slice = plan.mode == "per-slice" or (
        plan.mode == "uniform" and not (_is_int(plan.slope) and _is_int(plan.intercept)))
    notes = []
    if per_slice:
        out = np.empty((nz, ny, nx), dtype=np.float32)
        buf = np.empty((ny, nx), dtype=raw_dt)
        for k, h in enumerate(slices):
            raw = _read_frame(h, buf)
            # a decoded frame may be a view into the cached multi-frame array: never edit it
            raw = _fix_bits(raw.copy() if raw is not buf else raw, h)
            np.multiply(raw, np.float32(h.rescale_slope), out=out[k], casting="unsafe")
            out[k] += np.float32(h.rescale_intercept)
            if progress:
                progress(k + 1, nz)
        notes.append("applied each slice's own (0028,1053) 'Rescale Slope' and (0028,1052) "
                     "'Rescale Intercept'; values are float32" if plan.mode == "per-slice" else
                     f"applied (0028,1053) 'Rescale Slope' {plan.slope:g} and (0028,1052) "
                     f"'Rescale Intercept' {plan.intercept:g} (not integers); values are float32")
        return out, plan, notes

    out = np.empty((nz, ny, nx), dtype=raw_dt)
    for k, h in enumerate(slices):
        got = _read_frame(h, out[k])
        if got is not out[k]:
            out[k] = got
        if progress:
            progress(k + 1, nz)
    out = _fix_bits(out, slices[0])
    if plan.mode == "none":
        return out, plan, notes
    slope, intercept = int(plan.slope), int(plan.intercept)
    lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
    ends = sorted([lo * slope + intercept, hi * slope + intercept])
    target = _fit_int(ends[0], ends[1], raw_dt.itemsize)
    if target is None:  # beyond every integer type: float32, computed in float64
        res = out.astype(np.float64)
        res *= slope
        res += intercept
        notes.append(f"applied (0028,1053) 'Rescale Slope' {slope} and (0028,1052) 'Rescale "
                     f"Intercept' {intercept}: values {ends[0]:g} to {ends[1]:g} fit no integer "
                     "type, so they are float32 (rounded to 24 significant bits)")
        return res.astype(np.float32), plan, notes
    if target.itemsize == raw_dt.itemsize:
        # Modular arithmetic in the stored type, then reinterpret the bits: exact whenever the
        # true result fits the target type, which _fit_int guarantees.  No extra memory.
        if slope != 1:
            np.multiply(out, slope, out=out, casting="unsafe")
        if intercept:
            np.add(out, np.array(intercept).astype(raw_dt, casting="unsafe"), out=out,
                   casting="unsafe")
        out = out.view(target)
    else:
        res = out.astype(target)
        if slope != 1:
            res *= slope
        res += intercept
        out = res
    notes.append(f"applied (0028,1053) 'Rescale Slope' {slope} and (0028,1052) 'Rescale "
                 f"Intercept' {intercept} to every slice; values are exact {out.dtype}")
    return out, plan, notes


def _decode_rgb(slices: list, progress) -> np.ndarray:
    nz, ny, nx = len(slices), slices[0].rows, slices[0].columns
    out = np.empty((nz, ny, nx, 3), dtype=np.uint8)
    for k, h in enumerate(slices):
        if h.is_native and h.planar_configuration == 1:  # RRR...GGG...BBB...
            planes = np.empty((3, ny, nx), dtype=np.uint8)
            out[k] = np.moveaxis(_read_frame(h, planes), 0, -1)
        else:
            got = _read_frame(h, out[k])
            if got is not out[k]:
                out[k] = got
        if progress:
            progress(k + 1, nz)
    return out


def read_stored(h: SliceHeader) -> np.ndarray:
    """The stored integers of one single-frame file, as (rows, columns)."""
    buf = np.empty((h.rows, h.columns), dtype=stored_dtype(h))
    got = _read_frame(h, buf)
    return _fix_bits(got if got is not buf else buf, h)


def _read_frame(h: SliceHeader, into: np.ndarray) -> np.ndarray:
    """Stored values of ``h``'s single frame, read into ``into`` when possible."""
    if "mosaic" in h.extra:
        return _mosaic_tile(h)
    if h.is_native:
        try:
            with open(h.path, "rb") as fp:
                fp.seek(h.pixel_offset)
                if h.byte_order == ">" and into.dtype.itemsize > 1:
                    n = fp.readinto(memoryview(into.view(np.uint8).reshape(-1)))
                    into.byteswap(inplace=True)
                else:
                    n = fp.readinto(memoryview(into.view(np.uint8).reshape(-1)))
        except OSError as exc:
            raise DecodeError(f"{h.path}: cannot read pixel data ({exc.strerror})")
        if n != into.nbytes:
            raise DecodeError(f"{h.path}: truncated (7FE0,0010) 'Pixel Data': {n} bytes read, "
                              f"{into.nbytes} expected")
        return into
    return _decode_compressed(h)


_LAST_DECODED: dict = {}  # {path: all frames} of the last multi-frame file or mosaic decoded


def _mosaic_tile(h: SliceHeader) -> np.ndarray:
    """One tile of a Siemens MOSAIC: the whole mosaic is decoded once per file."""
    rows, cols, r, c = h.extra["mosaic"]
    if h.path not in _LAST_DECODED:
        whole = SliceHeader(**{**h.__dict__, "rows": rows, "columns": cols, "frame": 0,
                               "extra": {}})
        buf = np.empty((rows, cols), dtype=stored_dtype(h))
        got = _read_frame(whole, buf)
        _LAST_DECODED.clear()
        _LAST_DECODED[h.path] = got
    return _LAST_DECODED[h.path][r * h.rows:(r + 1) * h.rows, c * h.columns:(c + 1) * h.columns]


def _decode_compressed(h: SliceHeader) -> np.ndarray:
    import pydicom
    try:
        if h.number_of_frames > 1:
            if h.path not in _LAST_DECODED:
                _LAST_DECODED.clear()
                _LAST_DECODED[h.path] = pydicom.dcmread(h.path).pixel_array
            arr = _LAST_DECODED[h.path][h.frame]
        else:
            arr = pydicom.dcmread(h.path).pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # decoders raise many types (a Rust codec's panic is a
        # BaseException): name the file and syntax
        from pydicom.uid import UID
        raise DecodeError(f"{h.path}: cannot decode (7FE0,0010) 'Pixel Data' with transfer syntax "
                          f"'{UID(h.transfer_syntax).name}' ({type(exc).__name__}: {exc})")
    want = (h.rows, h.columns) + ((3,) if h.samples_per_pixel == 3 else ())
    if arr.shape != want:
        raise DecodeError(f"{h.path}: decoded pixel data has shape {arr.shape}, expected "
                          f"{want} from (0028,0010)/(0028,0011)/(0028,0002)")
    return arr


def _fix_bits(arr: np.ndarray, h: SliceHeader) -> np.ndarray:
    """Mask bits above BitsStored and sign-extend signed data (overlay bits, padding)."""
    bits, alloc = h.bits_stored, h.bits_allocated
    if not (0 < bits < alloc):
        return arr
    if h.pixel_representation:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if arr.size and (arr.min() < lo or arr.max() > hi):
            shift = alloc - bits
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
    else:
        hi = (1 << bits) - 1
        if arr.size and arr.max() > hi:
            np.bitwise_and(arr, np.array(hi, dtype=arr.dtype), out=arr)
    return arr
