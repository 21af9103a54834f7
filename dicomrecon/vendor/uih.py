"""UIH "virtual frame" (VFRAME) mosaics: several slices tiled in one image, placed by UIH's
private per-slice sequence.

A UIH VFRAME file (ImageType ``...\\VFRAME``, Manufacturer ``UIH``) has no top-level
ImagePositionPatient.  Its slices are tiles of ``R*C`` pixels (private (0065,1004), e.g.
``64*64``; else AcquisitionMatrix (0018,1310)) laid out row by row across the image; the
private sequence (0065,1051) has one item per slice, in tile order, whose
ImagePositionPatient (0020,0032) is that tile's first pixel (the number of slices is
(0065,1050)).  ImageOrientationPatient and PixelSpacing are the file's own.  Layout learnt
from dcm2niix's UIH support and checked in world coordinates against dcm2niix and the
per-slice positions on the corpus (tests/test_diffusion_corpus.py).
"""

from __future__ import annotations

import re
from typing import Optional

PER_SLICE_SEQ = 0x00651051
N_SLICES = 0x00651050
TILE_SIZE = 0x00651004


def is_vframe(h) -> bool:
    return "UIH" in (h.manufacturer or "").upper() and any(
        t.upper() == "VFRAME" for t in h.image_type) and h.number_of_frames == 1


def _tile_size(ds, rows: int, cols: int, n: int) -> Optional[tuple]:
    cands = []
    el = ds.get(TILE_SIZE)
    m = re.fullmatch(r"\s*(\d+)\s*\*\s*(\d+)\s*", str(el.value if el is not None else ""))
    if m:
        cands.append((int(m.group(1)), int(m.group(2))))
    am = ds.get("AcquisitionMatrix")
    if am and len(am) == 4:
        cands.append((max(am[1], am[3]) or 0, max(am[0], am[2]) or 0))
    for tr, tc in cands:
        if tr > 0 and tc > 0 and rows % tr == 0 and cols % tc == 0 and \
                (rows // tr) * (cols // tc) >= n:
            return tr, tc
    return None


def expand_vframe(h, make) -> list:
    """One header per tile of a UIH VFRAME file (``make(**fields)`` builds a SliceHeader), or
    ``[h]`` with ``h.mosaic_problem`` saying why the layout could not be read."""
    import pydicom

    from ..header_model import MosaicTile
    try:
        ds = pydicom.dcmread(h.path, stop_before_pixels=True)
        items = list(ds[PER_SLICE_SEQ].value) if PER_SLICE_SEQ in ds else []
        n = int(ds[N_SLICES].value) if N_SLICES in ds else len(items)
    except Exception as exc:  # damaged private data: refused with the reason
        h.mosaic_problem = f"the UIH private header is unreadable ({type(exc).__name__})"
        return [h]
    if not items or n != len(items):
        h.mosaic_problem = (f"the UIH per-slice sequence (0065,1051) has {len(items)} "
                                     f"item(s), (0065,1050) says {n} slices")
        return [h]
    size = _tile_size(ds, h.rows, h.columns, n)
    if size is None or h.iop is None or h.pixel_spacing is None:
        h.mosaic_problem = (f"no tile size (0065,1004)/(0018,1310) divides the "
                                     f"{h.rows}x{h.columns} image into {n} tiles")
        return [h]
    tr, tc = size
    per_row = h.columns // tc
    out = []
    for k, item in enumerate(items):
        ipp = item.get("ImagePositionPatient")
        if ipp is None or len(ipp) != 3:
            h.mosaic_problem = f"(0065,1051) item {k + 1} has no ImagePositionPatient"
            return [h]
        d = dict(h.__dict__)
        d.update(frame=k, rows=tr, columns=tc, ipp=tuple(float(v) for v in ipp),
                 tile=MosaicTile(h.rows, h.columns, k // per_row, k % per_row),
                 extra={**h.extra, "uih_vframe": True})
        out.append(make(**d))
    return out
