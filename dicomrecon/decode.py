"""Decode the pixels of a sorted group into one (nz, ny, nx) array of real-world values.

The engines (:mod:`dicomrecon.engine.read`) give the *stored* values of every slice:

* ``itk``: SimpleITK's ``ImageSeriesReader`` on our sorted file list, ITK's own rescale undone
  exactly (:mod:`dicomrecon.engine.itk_decode`);
* ``auto``: uncompressed files read straight from the checked pixel offset into the output
  array (no copy per slice, no decoder), compressed files through ITK, in parallel.

:func:`plan_values` then decides the output type (ours, not ITK's):

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

from .engine.native_decode import DecodeError  # noqa: F401  (re-exported)
from .header_model import SliceHeader

ProgressFn = Optional[Callable[[int, int], None]]


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
    from .engine.native_decode import frame_dtype
    return frame_dtype(h)


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


def decode(slices: list, *, engine: str = "auto", progress: ProgressFn = None,
           preloaded: Optional[dict] = None) -> tuple:
    """Return ``(array (nz, ny, nx), ValuePlan, notes)`` for slices already in output order.

    ``engine``: ``"auto"`` (zero-copy reads of uncompressed files, ITK for compressed ones,
    decoded in parallel) or ``"itk"`` (SimpleITK ``ImageSeriesReader`` for everything); both
    give the same stored values (tests/test_engine.py).  ``preloaded``: {instance_key: stored
    frame} already read (by discovery's duplicate check), not read again.

    Raises :class:`DecodeError` when a file cannot be decoded, or a value is not finite.
    """
    from .engine.read import read_stack
    check_engine(engine)
    plan = plan_values(slices)
    stored = read_stack(slices, engine, progress, preloaded or {})
    out, plan, notes = _apply_values(slices, stored, plan)
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


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")


ENGINES = ("auto", "itk")


def _apply_values(slices: list, stored: np.ndarray, plan: "ValuePlan") -> tuple:
    """Our value plan on the stored values (in place where the type allows)."""
    raw_dt = plan.stored_dtype
    if slices[0].samples_per_pixel == 3:
        return stored, ValuePlan("none", None, None, raw_dt), [
            "8-bit colour kept as RGB triples (compressed YBR decoded to RGB)"]
    per_slice = plan.mode == "per-slice" or (
        plan.mode == "uniform" and not (_is_int(plan.slope) and _is_int(plan.intercept)))
    notes = []
    if per_slice:
        out = np.empty(stored.shape, dtype=np.float32)
        for k, h in enumerate(slices):
            raw = _fix_bits(stored[k], h)
            np.multiply(raw, np.float32(h.rescale_slope), out=out[k], casting="unsafe")
            out[k] += np.float32(h.rescale_intercept)
        notes.append("applied each slice's own (0028,1053) 'Rescale Slope' and (0028,1052) "
                     "'Rescale Intercept'; values are float32" if plan.mode == "per-slice" else
                     f"applied (0028,1053) 'Rescale Slope' {plan.slope:g} and (0028,1052) "
                     f"'Rescale Intercept' {plan.intercept:g} (not integers); values are float32")
        return out, plan, notes

    out = _fix_bits(stored, slices[0])
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


def read_stored(h: SliceHeader, engine: str = "auto") -> np.ndarray:
    """The stored values of one image (frame or tile), as (rows, columns)."""
    from .engine.read import read_stack
    return _fix_bits(read_stack([h], engine, None, {})[0], h)


def _fix_bits(arr: np.ndarray, h: SliceHeader) -> np.ndarray:
    """Mask bits above BitsStored and sign-extend signed data (overlay bits, padding)."""
    bits, alloc = h.bits_stored, h.bits_allocated
    if not (0 < bits < alloc) or arr.dtype.kind == "f" or alloc == 1:
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
