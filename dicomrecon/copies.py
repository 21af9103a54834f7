"""Copies and damaged files: images that share a SOPInstanceUID (exact copies dropped,
conflicts refused) and images lost to damage (told to the groups they may have belonged to)."""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from . import geometry as geo
from .geometry import ERROR, Finding
from .grouping import same_iop
from .header_model import SliceHeader
from .scan_model import Damage, Group


#: Header values that tell images apart (the split and repeat keys of dicomrecon.grouping, plus
#: identity): two images are one image's copies only when all of these and the pixels agree.
IDENTITY_FIELDS = (
    "sop_instance_uid", "frame", "series_instance_uid", "series_number", "instance_number",
    "acquisition_number", "image_type", "ipp", "iop", "pixel_spacing", "rows", "columns",
    "samples_per_pixel", "bits_allocated", "bits_stored", "pixel_representation", "photometric",
    "rescale_slope", "rescale_intercept", "echo_numbers", "echo_time", "temporal_position",
    "trigger_time", "diffusion_bvalue", "diffusion_direction", "stack_id", "tile", "text")


def _identity(h: SliceHeader) -> str:
    """repr, so that NaN values compare equal to themselves; ``extra`` holds vendor keys
    (e.g. GE diffusion (0019,10BB/BC/BD) when read) and StackID."""
    extra = sorted((k, str(v)) for k, v in h.extra.items())
    return repr(tuple(getattr(h, a) for a in IDENTITY_FIELDS) + tuple(extra))


def resolve_copies(headers: list, skipped: list, engine: str = "auto",
                   pixels: Optional[dict] = None):
    """Drop exact copies of an image; mark conflicting images that share a SOPInstanceUID.

    Returns ``(kept headers, {id(header): [paths of the other images with its UID]})``.
    Pixels decoded (with ``engine``) to compare copies go into ``pixels`` ({instance_key:
    stored frame} of the kept image) so that decoding does not read them again.
    The outcome does not depend on the order of the files: copies keep the first path in
    sorted order, and conflicting images are all kept and their groups refused."""
    by_key: dict = {}
    for h in headers:
        if h.sop_instance_uid:
            by_key.setdefault(h.instance_key, []).append(h)
    drop, conflicts, told = set(), {}, set()
    _file_digest.cache_clear()  # files may have changed since the last scan
    for hs in by_key.values():
        if len({h.path for h in hs}) < 2:
            continue
        hs = sorted(hs, key=lambda h: h.path)
        if len({_identity(h) for h in hs}) == 1 and _same_pixels(hs, engine, pixels):
            for h in hs[1:]:
                drop.add(id(h))
                if h.path not in told:  # once per file, not once per frame or mosaic tile
                    told.add(h.path)
                    skipped.append((h.path, f"an exact copy of {hs[0].path} (same (0008,0018) "
                                            "'SOP Instance UID', header keys and pixels): dropped"))
            continue
        for h in hs:
            conflicts[id(h)] = sorted({o.path for o in hs if o.path != h.path})
    return [h for h in headers if id(h) not in drop], conflicts


def _same_pixels(hs: list, engine: str = "auto", pixels: Optional[dict] = None) -> bool:
    """Byte-identical files (a plain copy) need no decoding; otherwise the stored values of
    each frame are compared (the first image's kept in ``pixels``)."""
    from .decode import read_stored

    if len({_file_digest(h.path) for h in hs}) == 1:
        return True
    try:
        first = read_stored(hs[0], engine)
        same = all(np.array_equal(first, read_stored(h, engine)) for h in hs[1:])
    except Exception:  # unreadable pixels are not provably the same: a conflict, not a copy
        return False
    if same and pixels is not None:
        pixels[hs[0].instance_key] = first
    return same


def sha256_file(path: str) -> str:
    """The hex sha256 of a file's bytes, read 1 MiB at a time (also the batch manifest's)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


#: The copy check hashes each file once per scan (cleared when a scan starts).
_file_digest = functools.lru_cache(maxsize=64)(sha256_file)


def refuse_conflicts(g: Group, conflicts: dict) -> bool:
    bad = [(h, conflicts[id(h)]) for h in g.slices if id(h) in conflicts]
    if not bad:
        return False
    h, others = bad[0]
    pairs = sorted({h.path for h, _ in bad} | {p for _, o in bad for p in o})
    g.findings.append(Finding(
        "SOP_INSTANCE_UID_CONFLICT", ERROR,
        f"{h.path} and {', '.join(others)} share the (0008,0018) 'SOP Instance UID' value of "
        f"'{h.sop_instance_uid}' but differ in header or pixels: one UID must name one image, so "
        f"neither is used ({len(bad)} image(s) of this group; files: {', '.join(pairs)})",
        "(0008,0018)", h.sop_instance_uid))
    return True


def attach_damage(d: Damage, series: list, tol: geo.Tolerances) -> None:
    """Tell the groups a damaged file may have belonged to: those of its series (any series
    when its SeriesInstanceUID is unreadable) that it lies in or next to; with no readable
    position, every group of its series, or every group with a missing slice."""
    if d.series_uid is not None:
        groups = [g for s in series if s.uid == d.series_uid for g in s.groups]
    else:
        groups = [g for s in series for g in s.groups
                  if g.geometry is not None and g.geometry.spacing.missing]
    for g in groups:
        if _near(d, g, tol):
            g.damaged.append((d.path, d.reason))


def _near(d: Damage, g: Group, tol: geo.Tolerances) -> bool:
    geom = g.geometry
    if d.ipp is None or geom is None or geom.orientation is None or not len(geom.positions):
        return True
    if d.iop is not None and not same_iop(d.iop, g.first.iop, tol):
        return False
    p = float(np.asarray(d.ipp, float) @ geom.orientation.normal)
    step = geom.spacing.nominal if np.isfinite(geom.spacing.nominal) else 0.0
    reach = 1.5 * step + tol.duplicate_mm
    return bool(geom.positions[0] - reach <= p <= geom.positions[-1] + reach)
