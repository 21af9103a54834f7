"""The pictures of one volume: read the written file, draw its planes, its before/after and
its slice-position plot into PNG files, and return what the page needs to show them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..writers import _NIFTI_CODES
from .model import StackPositions, VolumeInfo, same_positions
from .naive import BeforeAfter, SourceCut, before_after, matches, read_sources, source_cut
from .planes import (PLANE_PX, THUMB_PX, Cuts, Plane, cuts_of, display_window, mid_planes,
                     save_png, square_pixels, strip_planes, to_rgb)
from .positions import DPI, FIG_SIZE, PositionPlot, position_plot

#: largest side of a picture in the strip of a 4D volume's mid-slice across t
STRIP_PX = 140


@dataclass
class Kept:
    """What ``convert --qc`` kept of one volume (:class:`~dicomrecon.qc.Collector`)."""

    cuts: Cuts
    source: Optional[SourceCut] = None   # the naive stack's plane of a resampled volume
    plot: object = None                  # a _PrePlot: the positions plot drawn ahead


@dataclass
class Picture:
    """A PNG beside the page: its src relative to index.html, its size, what it shows."""

    src: str
    width: int
    height: int
    title: str = ""
    letters: Optional[dict] = None   # edge -> letters, None for a picture without geometry


@dataclass
class Rendered:
    """The pictures of one section (a volume, or a scanned stack)."""

    anchor: str
    planes: list = field(default_factory=list)        # Picture
    last_planes: list = field(default_factory=list)   # Picture: 4D, the mid-planes at the last t
    strip: list = field(default_factory=list)         # Picture: 4D, the mid-slice across t
    cuts: Optional[Cuts] = None                       # the voxels drawn
    thumb: Optional[Picture] = None
    before: Optional[Picture] = None
    after: Optional[Picture] = None
    comparison: Optional[BeforeAfter] = None
    plot: Optional[Picture] = None
    plot_data: Optional[PositionPlot] = None
    errors: list = field(default_factory=list)       # what could not be drawn, and why


def load_array(path: str, fmt: str) -> np.ndarray:
    """A written volume as (nz, ny, nx), (nz, ny, nx, 3) for RGB or (nt, nz, ny, nx)."""
    if fmt in ("nii", "nii.gz"):
        return _load_nifti(path, fmt == "nii.gz")
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _load_nifti(path: str, gz: bool) -> np.ndarray:
    """A single-file NIfTI-1 as dicomrecon writes it (little-endian, identity scaling); any
    other NIfTI through nibabel.  Decompressed with ISA-L: a 150 MB CT in a fraction of the
    time zlib takes."""
    import struct
    from isal import igzip
    with (igzip.open(path, "rb") if gz else open(path, "rb")) as f:
        data = f.read()
    (size,) = struct.unpack_from("<i", data, 0)
    dims = struct.unpack_from("<8h", data, 40)
    code, _ = struct.unpack_from("<hh", data, 70)
    (offset,) = struct.unpack_from("<f", data, 108)
    slope, inter = struct.unpack_from("<ff", data, 112)
    dtype = {c: d for d, c in _NIFTI_CODES.items()}.get(code)
    if size != 348 or slope not in (0.0, 1.0) or inter != 0.0 or (dtype is None and code != 128):
        import nibabel as nib
        return np.asanyarray(nib.Nifti1Image.from_bytes(data).dataobj).T
    shape = tuple(int(n) for n in dims[1:1 + dims[0]])
    count = int(np.prod(shape)) * (3 if code == 128 else 1)
    a = np.frombuffer(data, dtype=np.uint8 if code == 128 else dtype.newbyteorder("<"),
                      count=count, offset=int(offset))
    if code == 128:  # RGB24: three bytes per voxel, x fastest
        return a.reshape(shape[::-1] + (3,))
    return a.reshape(shape[::-1])


def picture(rgb: np.ndarray, imgdir: str, name: str, plane: Optional[Plane] = None,
            max_px: int = PLANE_PX, title: str = "") -> Picture:
    """Save ``rgb`` (square pixels in mm when ``plane`` gives the spacing) as img/NAME.png:
    a voxel picture is a plain array, so Pillow writes it (no plotting library)."""
    if plane is not None:
        rgb = square_pixels(rgb, plane.spacing, max_px)
    save_png(os.path.join(imgdir, name), rgb)
    return Picture(f"{os.path.basename(imgdir)}/{name}", rgb.shape[1], rgb.shape[0],
                   title or (plane.title if plane else ""),
                   plane.letters if plane is not None else None)


def volume_cuts(vol: VolumeInfo) -> Cuts:
    """The mid-planes of a written volume, read from its file (of a 4D one: at t = 0, at the
    last t and the mid-slice across t)."""
    array = load_array(vol.path, vol.fmt)
    return cuts_of(array, time_axis=vol.n_fourth > 1 and array.ndim == 4 and vol.components == 1)


def render_volume(vol: VolumeInfo, imgdir: str, anchor: str,
                  kept: Optional[Kept] = None) -> Rendered:
    """Every picture of one written volume; a failure is reported in ``errors``.  ``kept`` is
    what convert --qc kept of it; without it the file is read (and the sources decoded)."""
    r = Rendered(anchor)
    cuts = kept.cuts if kept else None
    if cuts is None:
        try:
            cuts = volume_cuts(vol)
        except Exception as exc:  # one unreadable volume never stops the page
            r.errors.append(f"{vol.path}: cannot be read ({type(exc).__name__}: {exc})")
    if cuts is not None:
        r.cuts = cuts
        _draw_planes(r, vol, cuts, imgdir, kept.source if kept else None)
    if vol.positions is not None:
        r.plot, r.plot_data = plot_positions(vol.positions, imgdir, anchor,
                                             kept.plot if kept else None)
    return r


def _draw_planes(r: Rendered, vol: VolumeInfo, cuts: Cuts, imgdir: str,
                 cut: Optional[SourceCut]) -> None:
    planes = mid_planes(cuts, vol.affine)
    fill = vol.resample.fill_value if vol.resample and vol.resample.fill_voxels else None
    window = display_window(planes, exclude=fill)
    r.planes = _plane_pictures(planes, window, imgdir, f"{r.anchor}_plane", vol)
    p0 = planes[0]
    r.thumb = picture(to_rgb(p0.values, window, p0.outside), imgdir, f"{r.anchor}_thumb.png", p0,
                      THUMB_PX)
    if cuts.last is not None:
        _draw_fourth_axis(r, vol, cuts, imgdir)
    if vol.resample is None or vol.positions is None or not vol.sources:
        return
    if cut is None or not matches(cut, vol.resample, cuts):
        try:
            cut = source_cut(read_sources(vol.sources), vol.resample.src_offsets, cuts.shape[1:])
        except Exception as exc:  # the source may have moved since the conversion
            r.errors.append(f"before/after: the source slices cannot be read "
                            f"({type(exc).__name__}: {exc})")
            return
    ba = before_after(vol, cuts, cut, window)
    r.comparison = ba
    r.before = picture(ba.before.values, imgdir, f"{r.anchor}_before.png", ba.before)
    r.before.letters = None  # a naive stack has no true geometry
    r.after = picture(ba.after.values, imgdir, f"{r.anchor}_after.png", ba.after)


def _plane_pictures(planes: list, window: tuple, imgdir: str, stem: str, vol: VolumeInfo,
                    max_px: int = PLANE_PX) -> list:
    out = []
    for k, p in enumerate(planes):
        out.append(picture(to_rgb(p.values, window, p.outside), imgdir, f"{stem}{k}.png", p,
                           max_px))
        if vol.reconstruction == "placeholder":  # no patient space: no letters to show
            out[-1].letters = None
            out[-1].title += " (placeholder geometry: no orientation)"
    return out


def _draw_fourth_axis(r: Rendered, vol: VolumeInfo, cuts: Cuts, imgdir: str) -> None:
    """A 4D volume: the mid-planes at the last t, and the mid-slice z across t, on one grey
    window for all t (a volume darker or brighter than the others shows as such)."""
    last = mid_planes(cuts.last, vol.affine)
    strip = strip_planes(cuts, vol.affine, vol.fourth_values)
    window = display_window(strip + last)
    r.last_planes = _plane_pictures(last, window, imgdir, f"{r.anchor}_last", vol)
    r.strip = _plane_pictures(strip, window, imgdir, f"{r.anchor}_t", vol, STRIP_PX)


def _predrawn(pre, sp: StackPositions):
    """(PNG bytes, data) of a plot drawn ahead of the same positions, else None."""
    if pre is None or pre.future is None or not same_positions(pre.sp, sp):
        return None
    try:
        return pre.future.result()
    except Exception:  # the helper failed: the page draws the plot itself
        return None


def plot_positions(sp: StackPositions, imgdir: str, anchor: str, pre=None):
    """The slice-position plot of ``sp`` as img/ANCHOR_positions.png, and the data drawn; a
    plot drawn ahead (``pre``, by convert --qc) is used when its positions are the same."""
    name = f"{anchor}_positions.png"
    drawn = _predrawn(pre, sp)
    if drawn is not None:
        png, data = drawn
        with open(os.path.join(imgdir, name), "wb") as f:
            f.write(png)
    else:
        data = position_plot(sp, os.path.join(imgdir, name))
    w, h = (int(round(x * DPI)) for x in FIG_SIZE)
    return Picture(f"{os.path.basename(imgdir)}/{name}", w, h, "slice positions"), data
