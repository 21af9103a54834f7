"""Mid-planes of a volume as pictures: square pixels in millimetres, orientation letters.

A plane is a 2D cut through the volume's own index grid (no reslicing).  A cut through a
sheared grid (a tilted CT kept as acquired: the slice axis is not perpendicular to the slices)
is drawn in world geometry: each slice's row is shifted by its origin's in-plane offset, so the
picture is a parallelogram of true millimetres, never the index grid shown as a rectangle.
It is displayed in a conventional way - the patient's right on the left of an axial image, the
head at the top of a sagittal or coronal one - by flipping its axes; the letter on each edge is
then what :func:`dicomrecon.affines.patient_orientation` says for the direction that edge
points to, so a flip can never make a letter wrong.

Arrays as everywhere in dicomrecon: a volume is ``(nz, ny, nx)`` (``(nz, ny, nx, 3)`` for RGB),
its affine maps index ``(x, y, z)`` to LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..affines import patient_orientation

#: largest side of a plane picture, and of a thumbnail (pixels)
PLANE_PX = 320
THUMB_PX = 96
#: 4D volumes: at most this many time points in the strip of one mid-slice across t
STRIP_N = 12
#: overlay colours (RGB) and opacity; OUTSIDE_RGB paints what lies outside a sheared grid
FILL_RGB = (0, 190, 255)
OUTSIDE_RGB = (72, 64, 96)
INTERP_RGB = (255, 140, 0)
OVERLAY_ALPHA = 0.4


@dataclass
class Plane:
    """One 2D picture of a volume: ``values[row, column]`` as displayed, top row first."""

    title: str
    values: np.ndarray          # (H, W) or (H, W, 3)
    h_dir: np.ndarray           # (3,) unit LPS direction of the display's left -> right
    v_dir: np.ndarray           # (3,) unit LPS direction of the display's top -> bottom
    spacing: tuple              # (horizontal, vertical) mm per value pixel
    outside: Optional[np.ndarray] = None  # (H, W) True outside a sheared grid's parallelogram

    @property
    def letters(self) -> dict:
        return plane_letters(self.h_dir, self.v_dir)


def plane_letters(h_dir, v_dir) -> dict:
    """Letters of the four edges of a picture whose right and down directions are given.

    >>> plane_letters(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
    """
    h, v = np.asarray(h_dir, float), np.asarray(v_dir, float)
    right, bottom = patient_orientation(h, v)
    left, top = patient_orientation(-h, -v)
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def _flip_h(d: np.ndarray) -> bool:
    """Right edge towards L (radiological), P (sagittal, face on the left) or H."""
    i = int(np.argmax(np.abs(d)))
    return bool(d[i] < 0)


def _flip_v(d: np.ndarray) -> bool:
    """Head at the top; else anterior at the top; else the patient's right at the top."""
    i = int(np.argmax(np.abs(d)))
    return bool(d[i] > 0) if i == 2 else bool(d[i] < 0)


def oriented(title: str, values: np.ndarray, h_dir, v_dir, spacing,
             outside: Optional[np.ndarray] = None) -> Plane:
    """A :class:`Plane` from ``values[v, h]``, flipped to the display conventions."""
    h, v = np.asarray(h_dir, float), np.asarray(v_dir, float)
    if _flip_h(h):
        values, h = values[:, ::-1], -h
        outside = None if outside is None else outside[:, ::-1]
    if _flip_v(v):
        values, v = values[::-1], -v
        outside = None if outside is None else outside[::-1]
    return Plane(title, values, h, v, (float(spacing[0]), float(spacing[1])), outside)


def world_plane(title: str, values: np.ndarray, h_step, v_step) -> Plane:
    """A :class:`Plane` from ``values[v, h]`` whose index steps are the LPS vectors ``h_step``
    and ``v_step`` (mm).  When ``v_step`` is not perpendicular to ``h_step`` (a sheared grid)
    row r is shifted by r * (v_step . h) / |h_step| pixels: the picture shows the plane in true
    millimetres along h and the in-plane perpendicular to it, the rest marked ``outside``."""
    h_step, v_step = np.asarray(h_step, float), np.asarray(v_step, float)
    h_len = float(np.linalg.norm(h_step))
    h = h_step / h_len
    along = float(v_step @ h)
    perp = v_step - along * h
    v_len = float(np.linalg.norm(perp))
    shift = along / h_len  # pixels per row
    outside = None
    if abs(shift) * max(values.shape[0] - 1, 1) >= 0.5:
        values, outside = deshear(values, shift)
        title += " (sheared grid in world geometry)"
    return oriented(title, values, h, perp / v_len, (h_len, v_len), outside)


def deshear(values: np.ndarray, shift: float):
    """``values`` (H, W[, 3]) with row r moved right by round(r * shift) pixels on a wider
    canvas; returns it and the (H, W') mask of the canvas pixels no row covers."""
    hgt, wid = values.shape[:2]
    off = np.rint(np.arange(hgt) * shift).astype(np.intp)
    off -= off.min()
    cols = np.arange(wid + int(off.max()))[None, :] - off[:, None]
    outside = (cols < 0) | (cols >= wid)
    out = values[np.arange(hgt)[:, None], np.clip(cols, 0, wid - 1)]
    return out, outside


def axes_of(affine: np.ndarray):
    """Unit directions (3, 3) (columns x, y, z) and voxel sizes (3,) of an affine."""
    m = np.asarray(affine, float)[:3, :3]
    size = np.linalg.norm(m, axis=0)
    return m / np.where(size > 0, size, 1.0), size


@dataclass
class Cuts:
    """The three mid-planes of a volume in index order, all QC keeps of its voxels; of a 4D
    volume (nt, nz, ny, nx) those at t = 0, at the last t, and the mid-slice across t."""

    shape: tuple                # (nz, ny, nx)
    z: np.ndarray               # (ny, nx[, 3]) at z = nz // 2
    y: np.ndarray               # (nz, nx[, 3]) at y = ny // 2
    x: np.ndarray               # (nz, ny[, 3]) at x = nx // 2
    nt: int = 1                 # 4D: the length of the 4th axis
    last: Optional["Cuts"] = None   # 4D: the mid-planes at t = nt - 1
    strip: tuple = ()           # 4D: ((t, (ny, nx) slice z = nz // 2), ...) for <= STRIP_N t


def cuts_of(array: np.ndarray, time_axis: bool = False) -> Cuts:
    """Copies of the mid-planes of a (nz, ny, nx) or RGB (nz, ny, nx, 3) volume; with
    ``time_axis``, of a 4D (nt, nz, ny, nx) one."""
    if time_axis:
        nt, nz = array.shape[:2]
        ts = np.unique(np.rint(np.linspace(0, nt - 1, min(nt, STRIP_N))).astype(int))
        c = cuts_of(array[0])
        c.nt, c.last = nt, cuts_of(array[nt - 1]) if nt > 1 else None
        c.strip = tuple((int(t), array[t, nz // 2].copy()) for t in ts)
        return c
    nz, ny, nx = array.shape[:3]
    return Cuts((nz, ny, nx), array[nz // 2].copy(), array[:, ny // 2].copy(),
                array[:, :, nx // 2].copy())


def mid_planes(cuts: Cuts, affine: np.ndarray) -> list:
    """The three mid-planes of a volume: z (the slice plane), y and x fixed at the middle, in
    world geometry (see :func:`world_plane`)."""
    m = np.asarray(affine, float)[:3, :3]
    nz, ny, nx = cuts.shape
    return [
        world_plane(f"z = {nz // 2} of {nz}", cuts.z, m[:, 0], m[:, 1]),
        world_plane(f"y = {ny // 2} of {ny}", cuts.y, m[:, 0], m[:, 2]),
        world_plane(f"x = {nx // 2} of {nx}", cuts.x, m[:, 1], m[:, 2]),
    ]


def strip_planes(cuts: Cuts, affine: np.ndarray, labels) -> list:
    """The mid-slice z of a 4D volume at each kept t, oriented like the z mid-plane;
    ``labels[t]`` names the 4th-axis value of volume t."""
    m = np.asarray(affine, float)[:3, :3]
    return [world_plane(f"t = {t}" + (f" ({labels[t]})" if t < len(labels) else ""), values,
                        m[:, 0], m[:, 1]) for t, values in cuts.strip]


# --------------------------------------------------------------------------------------------
def display_window(planes: list, exclude=None) -> tuple:
    """Grey-level window (low, high) of a few planes: 0.5 and 99.5 percentiles, ignoring the
    value ``exclude`` (the fill value of a resampled volume)."""
    parts = []
    for p in planes:
        v = np.asarray(p.values, dtype=np.float32)
        step = (max(1, v.shape[0] // 128), max(1, v.shape[1] // 128))
        v = v[::step[0], ::step[1]]
        v = v[~p.outside[::step[0], ::step[1]]] if p.outside is not None else v.ravel()
        if exclude is not None:
            v = v[v != np.float32(exclude)]
        parts.append(v[np.isfinite(v)])
    v = np.concatenate(parts) if parts else np.zeros(1, np.float32)
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(v, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def to_rgb(values: np.ndarray, window: tuple, outside: Optional[np.ndarray] = None):
    """(H, W, 3) uint8 picture of grey values in ``window``, or of RGB values as they are;
    ``outside`` pixels painted OUTSIDE_RGB."""
    if values.ndim == 3:
        rgb = np.array(values, dtype=np.uint8)
    else:
        lo, hi = window
        g = (np.asarray(values, np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        g = np.nan_to_num(np.clip(g, 0, 255)).astype(np.uint8)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    if outside is not None:
        rgb[outside] = OUTSIDE_RGB
    return rgb


def tint(rgb: np.ndarray, mask: np.ndarray, colour: tuple, alpha: float = OVERLAY_ALPHA):
    """Blend ``colour`` into ``rgb`` where ``mask`` (H, W) is true, in place."""
    if mask.any():
        px = rgb[mask].astype(np.float32)
        rgb[mask] = (px * (1 - alpha) + np.float32(alpha) * np.asarray(colour, np.float32)
                     ).astype(np.uint8)
    return rgb


def square_pixels(rgb: np.ndarray, spacing: tuple, max_px: int = PLANE_PX) -> np.ndarray:
    """Resample (nearest) so one picture pixel is as wide as it is tall in mm, the longer side
    ``max_px`` or less: the picture has the plane's true aspect ratio."""
    h, w = rgb.shape[:2]
    width_mm, height_mm = w * spacing[0], h * spacing[1]
    scale = max(width_mm, height_mm) / max_px
    out_w = max(1, int(round(width_mm / scale)))
    out_h = max(1, int(round(height_mm / scale)))
    cols = np.minimum((np.arange(out_w) + 0.5) * w / out_w, w - 1).astype(np.intp)
    rows = np.minimum((np.arange(out_h) + 0.5) * h / out_h, h - 1).astype(np.intp)
    return rgb[rows[:, None], cols[None, :]]


def save_png(path: str, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 picture as PNG with Pillow (matplotlib's own image writer):
    importing it costs far less than matplotlib.image."""
    from PIL import Image
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        path, format="PNG", compress_level=3)
