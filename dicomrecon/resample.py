"""One resampler for tilted, irregularly spaced and gappy slice stacks.  Pure numpy, no I/O.

Input: sorted source slices that share one orientation, each with its own origin (IPP), and a
target grid.  The target grid is orthogonal: its x and y axes are the source row and column
directions with the source pixel spacing (the same pixel lattice as the first slice, extended
by whole pixels to cover every slice's footprint), and its z axis is the true slice normal.

For each target voxel, its two bracketing source slices along the normal are found; on each,
the voxel's exact in-plane position (the projection along the normal) is interpolated; the two
values are blended by distance along the normal.  One pass, no value is interpolated twice.
This single mechanism covers gantry tilt (an in-plane offset that grows with slice index, of
any sign, about any axis, slices in either order), irregular spacing, missing slices and any
combination.  ``linear`` is bilinear in-plane and linear along the normal; ``nearest`` takes
the nearest slice and the nearest pixel (for label images: no new values).

Voxels whose position lies outside the bracketing slices' footprints get ``fill``.

Array conventions as everywhere in dicomrecon: slices are (ny, nx) arrays, volumes
(nz, ny, nx); an affine maps index (x, y, z) to LPS mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .geometry import Orientation, lps_affine, median, plane_lattice_origin

EPS = 1e-6


@dataclass
class TargetGrid:
    """Where the output lies: an orthogonal grid plus how each source slice sits on it."""

    affine: np.ndarray          # (4, 4) index (x, y, z) -> LPS mm
    shape_zyx: tuple
    z_positions: np.ndarray     # (nz,) output slice positions along the normal, rel. to slice 0
    src_positions: np.ndarray   # (N,) source positions along the normal, rel. to slice 0
    src_offsets: np.ndarray     # (N, 2) (x, y) in target pixels of each source slice's origin
    spacing_rule: str

    def to_dict(self) -> dict:
        return {"shape_xyz": list(self.shape_zyx[::-1]), "affine_lps": self.affine.tolist(),
                "slice_spacing": float(np.linalg.norm(self.affine[:3, 2])),
                "spacing_rule": self.spacing_rule}


def slice_spacing(positions: np.ndarray, rule: Union[str, float]) -> float:
    """Output slice spacing from sorted source positions: 'median', 'min' or a number (mm)."""
    steps = np.diff(np.asarray(positions, float))
    steps = steps[steps > EPS]
    if isinstance(rule, (int, float)) or (isinstance(rule, str) and _is_number(rule)):
        value = float(rule)
        if not value > 0:
            raise ValueError(f"slice spacing must be positive, got {rule!r}")
        return value
    if steps.size == 0:
        raise ValueError("a stack with one position has no slice spacing")
    if rule == "median":
        return median(steps)
    if rule == "min":
        return float(steps.min())
    raise ValueError(f"unknown spacing rule {rule!r}: use 'median', 'min' or a number of mm")


def _is_explicit(rule) -> bool:
    return isinstance(rule, (int, float)) or (isinstance(rule, str) and _is_number(rule))


def uncovered_mm(grid: "TargetGrid") -> float:
    """How far the last source slice lies beyond the last output plane (explicit spacing)."""
    return float(grid.src_positions[-1] - grid.z_positions[-1]) if len(grid.z_positions) else 0.0


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def target_grid(orientation: Orientation, pixel_spacing: Sequence[float], ipp_sorted: np.ndarray,
                shape_yx: tuple, spacing: Union[str, float] = "median") -> TargetGrid:
    """The orthogonal grid that covers every source slice.

    orientation : shared row/column/normal of the slices
    pixel_spacing : (2,) [row spacing, column spacing]
    ipp_sorted : (N, 3) slice origins, ascending along the normal
    shape_yx : (rows, columns) of each slice
    """
    ipp = np.asarray(ipp_sorted, float)
    dy, dx = float(pixel_spacing[0]), float(pixel_spacing[1])
    ny, nx = shape_yx
    rel = ipp - ipp[0]
    pos = rel @ orientation.normal
    # In-plane offset of each slice origin from slice 0's lattice, in pixels.
    u = rel @ orientation.row / dx
    v = rel @ orientation.col / dy
    x0 = math.floor(u.min() + EPS)
    y0 = math.floor(v.min() + EPS)
    x1 = math.ceil(u.max() + nx - 1 - EPS)
    y1 = math.ceil(v.max() + ny - 1 - EPS)
    dz = slice_spacing(pos, spacing) if len(pos) > 1 else 1.0
    if len(pos) > 1 and not _is_explicit(spacing):
        # A rule (median, min) picks the step nearest to it that spans the first to the last
        # slice exactly, so no acquired slice falls beyond the grid.
        dz = pos[-1] / max(1, round(pos[-1] / dz))
    nz = int(math.floor(pos[-1] / dz + EPS)) + 1 if len(pos) > 1 else 1
    affine = lps_affine(orientation, pixel_spacing, dz,
                        plane_lattice_origin(orientation, pixel_spacing, ipp[0], x0, y0))
    offsets = np.column_stack([u - x0, v - y0])
    return TargetGrid(affine, (nz, y1 - y0 + 1, x1 - x0 + 1), np.arange(nz) * dz, pos, offsets,
                      str(spacing))


def _shift_bilinear(src: np.ndarray, sx: float, sy: float, out_shape: tuple) -> np.ndarray:
    """out[y, x] = src at (row y - sy, column x - sx), bilinear; NaN outside the slice."""
    out = np.full(out_shape, np.nan, dtype=np.float32)
    tmp = _shift_axis(src.astype(np.float32, copy=False), -sx, out_shape[1], axis=1)
    if tmp is None:
        return out
    res = _shift_axis(tmp, -sy, out_shape[0], axis=0)
    if res is not None:
        out[:] = res
    return out


def _shift_axis(a: np.ndarray, shift: float, n_out: int, axis: int):
    """Sample ``a`` along ``axis`` at positions ``i + shift`` for i in range(n_out); NaN outside."""
    n_in = a.shape[axis]
    i0 = math.floor(shift + EPS)
    f = shift - i0
    if abs(f) < EPS:
        f = 0.0
    need = 1 if f > 0 else 0
    lo = max(0, -i0)                      # first output index with a valid source
    hi = min(n_out, n_in - need - i0)     # one past the last
    shape = list(a.shape)
    shape[axis] = n_out
    out = np.full(shape, np.nan, dtype=np.float32)
    if hi <= lo:
        return out

    def take(start, stop):
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(start, stop)
        return a[tuple(sl)]

    dst = [slice(None)] * a.ndim
    dst[axis] = slice(lo, hi)
    left = take(lo + i0, hi + i0)
    if f == 0.0:
        out[tuple(dst)] = left
    else:
        right = take(lo + i0 + 1, hi + i0 + 1)
        seg = out[tuple(dst)]
        np.subtract(right, left, out=seg)
        seg *= np.float32(f)
        seg += left
    return out


@dataclass
class ResampleResult:
    array: np.ndarray
    sources: list            # per output slice: [(source index, weight), ...]
    fill_voxels: int
    fill_value: float


def resample(slices: np.ndarray, grid: TargetGrid, *, method: str = "linear",
             fill: float = 0.0, out_dtype=None, progress=None) -> ResampleResult:
    """Resample sorted source ``slices`` (N, ny, nx) onto ``grid``.

    Integer input is rounded back to its own integer type for ``linear`` (``out_dtype``
    overrides), so a CT stays int16 HU; ``nearest`` never creates new values.
    """
    if method not in ("linear", "nearest"):
        raise ValueError(f"unknown interpolation {method!r}: use 'linear' or 'nearest'")
    slices = np.asarray(slices)
    n_src = slices.shape[0]
    nz, ny, nx = grid.shape_zyx
    out_dtype = np.dtype(out_dtype or (slices.dtype if slices.dtype.kind in "iu" else np.float32))
    out = np.empty((nz, ny, nx), dtype=out_dtype)
    pos = grid.src_positions
    offs = grid.src_offsets
    cache: dict = {}
    sources = []
    n_fill = 0

    def plane(i):
        if i not in cache:
            if len(cache) > 2:
                cache.pop(min(cache))
            if method == "nearest":
                cache[i] = _shift_nearest(slices[i], offs[i, 0], offs[i, 1], (ny, nx))
            else:
                cache[i] = _shift_bilinear(slices[i], offs[i, 0], offs[i, 1], (ny, nx))
        return cache[i]

    for k, z in enumerate(grid.z_positions):
        if n_src == 1:
            i, w = 0, 0.0
        else:
            i = int(np.clip(np.searchsorted(pos, z + EPS, side="right") - 1, 0, n_src - 2))
            w = float((z - pos[i]) / (pos[i + 1] - pos[i]))
            if w < EPS:
                w = 0.0
            elif w > 1 - EPS:
                i, w = i + 1, 0.0
        if method == "nearest" and w > 0:
            i, w = (i, 0.0) if w <= 0.5 else (i + 1, 0.0)
        if w == 0.0:
            val = plane(i)
            sources.append([(i, 1.0)])
        else:
            a, b = plane(i), plane(i + 1)
            val = a + np.float32(w) * (b - a)
            sources.append([(i, 1.0 - w), (i + 1, w)])
        bad = np.isnan(val)
        nb = int(np.count_nonzero(bad))
        n_fill += nb
        if out_dtype.kind in "iu":
            if nb:
                val = np.where(bad, np.float32(fill), val)
            info = np.iinfo(out_dtype)
            np.clip(np.rint(val), info.min, info.max, out=out[k], casting="unsafe")
        else:
            out[k] = val
            if nb:
                out[k][bad] = fill
        if progress:
            progress(k + 1, nz)
    return ResampleResult(out, sources, n_fill, float(fill))


def _shift_nearest(src: np.ndarray, sx: float, sy: float, out_shape: tuple) -> np.ndarray:
    """Nearest-pixel version of :func:`_shift_bilinear` (values kept as float32, NaN outside)."""
    ix, iy = int(math.floor(-sx + 0.5 + EPS)), int(math.floor(-sy + 0.5 + EPS))
    return _shift_bilinear(src, -ix, -iy, out_shape)
