"""Value encoding of an export: one RescaleSlope / RescaleIntercept for the series, planned from
statistics gathered slice by slice, then applied slice by slice (pure numpy, no full-volume
copy).  See the package docstring, "Values"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import RefusedError

U16 = (0, 65535)
I16 = (-32768, 32767)


def ds_str(x: float) -> str:
    """The most precise Decimal String (VR DS, at most 16 characters) for ``x``.

    >>> ds_str(-123.45678901234567), ds_str(1 / 3), ds_str(0.0)
    ('-123.45678901235', '0.33333333333333', '0')
    """
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{x} cannot be a DICOM Decimal String")
    if x == 0:
        return "0"
    for p in range(16, 0, -1):
        s = f"{x:.{p}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"{x} does not fit a 16-character Decimal String")  # pragma: no cover


@dataclass(frozen=True)
class ValueEncoding:
    """How the volume's values are stored: ``value = stored * slope + intercept``."""

    stored_dtype: str        # "uint16", "int16" or "uint8" (RGB)
    slope: float             # RescaleSlope as written
    intercept: float         # RescaleIntercept as written
    rescale: bool            # RescaleSlope/Intercept written (always for CT)
    exact: bool              # every value reads back exactly
    step: float              # quantisation step (value units per stored integer)
    max_error: float         # largest |read back - value| over the volume (float64 arithmetic)
    value_range: tuple       # (min, max) of the input values
    input_dtype: str
    rescale_type: str = ""   # "HU" for CT, else "US" (unspecified) when a rescale is written
    quantised: bool = False  # stored = rint((value - intercept) / slope), not value - intercept

    @property
    def slope_ds(self) -> str:
        return ds_str(self.slope)

    @property
    def intercept_ds(self) -> str:
        return ds_str(self.intercept)

    def describe(self) -> str:
        how = (f"{self.stored_dtype}, RescaleSlope {self.slope_ds}, RescaleIntercept "
               f"{self.intercept_ds}" if self.rescale else f"{self.stored_dtype}, no rescale")
        if self.exact:
            return f"exact ({how})"
        return (f"quantised ({how}): step {self.step:.6g}, largest error {self.max_error:.3g} "
                f"(input {self.input_dtype}, range {self.value_range[0]:.6g} to "
                f"{self.value_range[1]:.6g})")

    def to_dict(self) -> dict:
        return {"stored_dtype": self.stored_dtype, "rescale_slope": self.slope_ds,
                "rescale_intercept": self.intercept_ds, "rescale": self.rescale,
                "rescale_type": self.rescale_type, "exact": self.exact,
                "quantisation_step": self.step, "max_error": self.max_error,
                "value_range": list(self.value_range), "input_dtype": self.input_dtype}


def _fits(lo, hi, rng) -> bool:
    return rng[0] <= lo and hi <= rng[1]


@dataclass
class _Stats:
    """What the encoding is chosen from, gathered one slice at a time."""

    dtype: np.dtype = None
    size: int = 0
    lo: float = np.inf
    hi: float = -np.inf
    bad: int = 0           # NaN / infinite voxels
    whole: bool = True     # every value an integer (below 2**53)

    def add(self, plane: np.ndarray) -> None:
        p = np.asarray(plane)
        if self.dtype is None:
            self.dtype = p.dtype
        if p.size == 0:
            return
        if p.dtype == bool:
            p = p.view(np.uint8)
        self.size += p.size
        if p.dtype.kind == "f":
            finite = np.isfinite(p)
            self.bad += int(p.size - np.count_nonzero(finite))
            if self.bad:
                return
            self.whole = self.whole and bool(np.all(p == np.rint(p))) and \
                float(np.abs(p).max()) < 2.0 ** 53
            self.lo, self.hi = min(self.lo, float(p.min())), max(self.hi, float(p.max()))
        elif p.dtype.kind in "ui":
            self.lo, self.hi = min(self.lo, int(p.min())), max(self.hi, int(p.max()))


def _check(st: _Stats) -> None:
    if st.dtype is None or st.size == 0:
        raise RefusedError("the volume is empty (no voxels)")
    if st.dtype != bool and st.dtype.kind not in "uif":
        raise RefusedError(f"values of type {st.dtype} cannot be stored as DICOM pixels; "
                           "expected integers or floats")
    if st.bad:
        raise RefusedError(f"{st.bad} voxel(s) are NaN or infinite; DICOM integer "
                           "pixels cannot hold them", hint="replace them (e.g. with 0) first")


def _exact(st: _Stats, dtype, intercept: int, rescale: bool, rtype: str) -> ValueEncoding:
    return ValueEncoding(str(np.dtype(dtype)), 1.0, float(intercept), rescale, True, 1.0, 0.0,
                         (st.lo, st.hi), str(st.dtype), rtype if rescale else "")


def _choose_exact(st: _Stats, ct: bool, rtype: str):
    """The exact 16-bit storage of whole values, or None when their range is too wide."""
    lo, hi = int(st.lo), int(st.hi)
    st.lo, st.hi = lo, hi
    if ct:
        for dt, rr in ((np.uint16, U16), (np.int16, I16)):
            if _fits(lo + 1024, hi + 1024, rr):
                return _exact(st, dt, -1024, True, rtype)
    kinds = ((np.int16, I16), (np.uint16, U16)) if st.dtype == np.int16 else \
        ((np.uint16, U16), (np.int16, I16))
    for dt, rr in kinds:  # int16 input stays int16 when it fits, else uint16 first
        if _fits(lo, hi, rr):
            return _exact(st, dt, 0, ct, rtype)
    if hi - lo <= 65535:
        return _exact(st, np.uint16, lo, True, rtype)
    return None


def _quantised_scale(lo: float, hi: float) -> tuple:
    """(slope, intercept) putting [lo, hi] onto 0..65535, intercept <= lo, as DS strings allow."""
    intercept = float(ds_str(lo))
    if intercept > lo:
        intercept = float(ds_str(lo - abs(lo) * 1e-14 - 1e-300))
    span = hi - intercept
    if span <= 0:
        return 1.0, intercept
    slope = float(ds_str(span / 65535.0))
    if span / slope > 65535.0 + 1e-9:
        slope = float(ds_str(slope * (1 + 1e-12)))
    return slope, intercept


def plan_encoding(planes: Callable[[], Iterable[np.ndarray]], *, ct: bool = False) -> ValueEncoding:
    """Choose the 16-bit storage of a volume given as ``planes()``, an iterable of its slices.

    ``planes`` is called once for the statistics, and once more to measure the largest error
    of a quantised encoding; a slice at a time is held.  ``ct``: keep CT conventions (stored =
    HU + 1024, RescaleIntercept -1024, RescaleType HU).  Raises :class:`RefusedError` for NaN /
    infinite values, an empty volume or a non-numeric type.
    """
    st = _Stats()
    for p in planes():
        st.add(p)
        if st.bad:
            break
    _check(st)
    rtype = "HU" if ct else "US"
    enc = _choose_exact(st, ct, rtype) if st.whole else None
    if enc is not None:
        return enc
    lo, hi = float(st.lo), float(st.hi)
    slope, intercept = _quantised_scale(lo, hi)
    draft = ValueEncoding("uint16", slope, intercept, True, False, slope, 0.0, (lo, hi),
                          str(st.dtype), rtype, quantised=True)
    err = 0.0
    for p in planes():
        p64 = np.asarray(p, dtype=np.float64)
        if p64.size:
            err = max(err, float(np.max(np.abs(encode_plane(draft, p64) * slope + intercept - p64))))
    return ValueEncoding("uint16", slope, intercept, True, err == 0.0, slope, err, (lo, hi),
                         str(st.dtype), rtype, quantised=True)


def encode_plane(enc: ValueEncoding, plane: np.ndarray) -> np.ndarray:
    """The stored integers of one slice (or any array) under ``enc``."""
    a = np.asarray(plane)
    if a.dtype == bool:
        a = a.view(np.uint8)
    dtype = np.dtype(enc.stored_dtype)
    if enc.quantised:
        q = np.rint((a.astype(np.float64) - enc.intercept) / enc.slope)
        return np.clip(q, 0, 65535).astype(dtype)
    if not enc.intercept:
        return a.astype(dtype)
    wide = np.int64 if a.dtype.kind == "f" or a.dtype.itemsize > 2 else np.int32
    return (a.astype(wide) - int(enc.intercept)).astype(dtype)


def planes_of(array: np.ndarray) -> Iterator[np.ndarray]:
    """The slices ``array[k]`` of an (nz, ...) array (a 0-d or 1-d array is one slice)."""
    a = np.asarray(array)
    if a.ndim <= 1:
        yield a
        return
    for k in range(a.shape[0]):
        yield a[k]


def plan_values(array: np.ndarray, *, ct: bool = False):
    """Choose the 16-bit storage of ``array`` and encode it.

    array : (nz, ny, nx) numeric array (bool, any integer or float type)
    ct : keep CT conventions (stored = HU + 1024, RescaleIntercept -1024, RescaleType HU)
    Returns ``(encoding, stored)`` with ``stored`` the (nz, ny, nx) uint16/int16 array.
    Raises :class:`RefusedError` for NaN / infinite values.  (Export itself encodes one slice
    at a time with :func:`plan_encoding` and :func:`encode_plane`.)

    >>> enc, stored = plan_values(np.array([[[0, 7, 300]]], dtype=np.int32))
    >>> enc.stored_dtype, enc.exact, enc.rescale, stored.tolist()
    ('uint16', True, False, [[[0, 7, 300]]])
    >>> enc, stored = plan_values(np.array([[[-1000, 0, 2000]]], dtype=np.int16), ct=True)
    >>> enc.stored_dtype, enc.intercept, stored.tolist()
    ('uint16', -1024.0, [[[24, 1024, 3024]]])
    """
    a = np.asarray(array)
    enc = plan_encoding(lambda: planes_of(a), ct=ct)
    return enc, encode_plane(enc, a)
