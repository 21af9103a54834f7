"""Before and after for a resampled volume.

"Before" is what a naive tool shows: the source slices decoded with dicomrecon's own decode
path and stacked one after the other at the median step, every slice's origin assumed to be
the first one's (no tilt correction, no gaps).  "After" is the written volume in the same plane.
``convert --qc`` keeps that plane of the source slices as it decodes them
(:func:`source_cut`, through ``convert(on_decoded=...)``); ``qc OUTDIR`` decodes them again.
The plane is the one where the correction shows: the one holding the direction in which the
slice origins drift (the gantry tilt), else the column direction and the slice normal.
Output slices that lie inside a gap (between two source slices further apart than the
tolerance) are tinted orange, voxels set to the fill value blue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ResampleInfo, StackPositions, VolumeInfo
from .planes import FILL_RGB, INTERP_RGB, Cuts, Plane, axes_of, oriented, tint, to_rgb


@dataclass
class SourceCut:
    """The plane of the naive stack that "before" shows: one column (``fixed`` 0, x fixed) or
    one row (``fixed`` 1) of every source slice, and what chose it."""

    values: np.ndarray            # (N, ny[, 3]) or (N, nx[, 3])
    fixed: int
    index: int                    # the source column or row
    offsets: np.ndarray           # (N, 2) source origins in target pixels (the sidecar's)
    out_yx: tuple                 # (ny, nx) of the written grid


def source_cut(source: np.ndarray, offsets, out_yx: tuple) -> SourceCut:
    """The naive plane of ``source`` (N, ny, nx[, 3]) in the same world plane as the written
    volume's mid-plane: the plane holding the tilt drift (see :func:`tilt_axis`), at the source
    column (row) under the output's middle one."""
    offsets = np.asarray(offsets, float).reshape(-1, 2)
    other = 1 - tilt_axis(offsets)  # the axis held fixed: x (0) or y (1)
    co = out_yx[1 - other] // 2
    shift = int(round(float(np.mean(offsets[:, other])))) if offsets.size else 0
    c = int(np.clip(co - shift, 0, source.shape[2 - other] - 1))
    values = source[:, :, c] if other == 0 else source[:, c, :]
    return SourceCut(values.copy(), other, c, offsets, tuple(out_yx))


def source_cut_of_plan(vp, source: np.ndarray) -> SourceCut:
    """:func:`source_cut` from a plan and its decoded slices (``convert(on_decoded=...)``):
    the offsets and the in-plane grid are those the resampling computes from the headers."""
    from ..resample import target_grid
    g, first = vp.geometry, vp.slices[0]
    grid = target_grid(g.orientation, g.pixel_spacing, g.ipp_sorted, (first.rows, first.columns))
    return source_cut(source, grid.src_offsets, grid.shape_zyx[1:])


@dataclass
class BeforeAfter:
    before: Plane                 # values are RGB pictures, oriented for display
    after: Plane
    interpolated: np.ndarray      # (nz,) bool: output slice lies inside a gap
    fill_px: int                  # fill-value pixels in the "after" plane


def read_sources(sources: list) -> np.ndarray:
    """The source slices' values (N, ny, nx) in the given order, through dicomrecon's decode."""
    from ..decode import decode
    from ..headers import read_many
    found = read_many(list(dict.fromkeys(s.path for s in sources)))  # one GDCM pass
    headers = []
    for s in sources:
        frames = found[s.path]
        if isinstance(frames, Exception):
            raise frames
        match = [h for h in frames if h.frame == s.index]
        headers.append(match[0] if match else frames[0])
    array, _, _ = decode(headers)
    return array


def interpolated_slices(res: ResampleInfo, sp: StackPositions) -> np.ndarray:
    """(nz,) True where an output slice lies strictly inside a step wider than the tolerance."""
    src = np.asarray(sp.positions, float) - float(sp.positions[0])
    z = res.z_positions
    out = np.zeros(z.size, bool)
    if src.size < 2 or not np.isfinite(sp.nominal):
        return out
    wide = sp.nominal * (1 + sp.spacing_rel)
    near = 0.01 * sp.nominal
    i = np.clip(np.searchsorted(src, z, side="right") - 1, 0, src.size - 2)
    lo, hi = src[i], src[i + 1]
    return ((hi - lo) > wide) & (z - lo > near) & (hi - z > near)


def tilt_axis(offs: np.ndarray) -> int:
    """0 when the slice origins drift along x (show an x-z plane), else 1 (a y-z plane)."""
    if not offs.size:
        return 1
    return 0 if np.ptp(offs[:, 0]) > np.ptp(offs[:, 1]) else 1


def matches(cut: SourceCut, res: ResampleInfo, cuts: Cuts) -> bool:
    """Whether a kept cut was chosen with the sidecar's offsets and the written grid."""
    return (cut.out_yx == tuple(cuts.shape[1:]) and cut.offsets.shape == res.src_offsets.shape
            and np.allclose(cut.offsets, res.src_offsets, rtol=0, atol=1e-6))


def before_after(vol: VolumeInfo, cuts: Cuts, cut: SourceCut, window) -> BeforeAfter:
    """The naive stack's plane ``cut`` beside the written volume's mid-plane."""
    res, sp = vol.resample, vol.positions
    d, s = axes_of(vol.affine)
    other = cut.fixed      # the axis held fixed: x (0) or y (1)
    axis = 1 - other       # the in-plane axis shown with the normal
    co = cuts.shape[2 - other] // 2
    after_v = cuts.x if other == 0 else cuts.y
    h_src = sp.col if axis == 1 else sp.row
    before = oriented(f"before: {cut.values.shape[0]} source slices stacked naively, "
                      f"{'column' if other == 0 else 'row'} {cut.index}",
                      to_rgb(cut.values, window), h_src, sp.normal, (s[axis], sp.nominal))
    rgb = to_rgb(after_v, window)
    interp = interpolated_slices(res, sp)
    fill = np.zeros(after_v.shape[:2], bool)
    if res.fill_voxels:
        fill = after_v == np.asarray(res.fill_value).astype(after_v.dtype) \
            if after_v.ndim == 2 else np.all(after_v == 0, axis=-1)
    tint(rgb, fill, FILL_RGB)
    tint(rgb, np.repeat(interp[:, None], rgb.shape[1], axis=1), INTERP_RGB, 0.25)
    after = oriented(f"after: the written volume, {'x' if other == 0 else 'y'} = {co}", rgb,
                     d[:, axis], d[:, 2], (s[axis], s[2]))
    return BeforeAfter(before, after, interp, int(np.count_nonzero(fill)))
