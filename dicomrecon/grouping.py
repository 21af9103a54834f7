"""Split a series into groups that can each become one volume, and judge each group.

A series splits by matrix, pixel spacing, pixel format and orientation, then images sharing a
position split by a repeat key (echo, time point, ...) or by rank; :func:`analyse_group` runs
the geometry checks on each group and adds its refusal findings.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import geometry as geo
from .geometry import ERROR, INFO, WARNING, Finding
from .header_model import SliceHeader
from .scan_model import Group


def same_iop(a, b, tol: geo.Tolerances) -> bool:
    """Same orientation; invalid (non-finite) ones are the same when their values are, so a
    NaN does not make every slice a group of its own."""
    if a is None or b is None:
        return a is None and b is None
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return bool(np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True))
    return geo.same_orientation(a, b, tol)


def _pixel_format(h: SliceHeader) -> tuple:
    return (h.samples_per_pixel, h.bits_allocated, h.pixel_representation, h.photometric)


def _image_kind(image_type: tuple) -> str:
    """The part of ImageType that makes images different volumes: localizer, the complex
    component (magnitude/phase/real/imaginary, field map), original vs derived."""
    t = [v.upper() for v in image_type]
    kind = [t[0]] if t else []
    if "LOCALIZER" in t:
        kind.append("LOCALIZER")
    comps = {"M": "M", "MAGNITUDE": "M", "P": "P", "PHASE": "P", "R": "R", "REAL": "R",
             "I": "I", "IMAGINARY": "I", "FIELD_MAP": "FIELD_MAP", "B0": "FIELD_MAP"}
    kind += sorted({comps[v] for v in t[2:] if v in comps})
    return "\\".join(kind)


def _split_keys(h: SliceHeader) -> dict:
    """The header values that split a series into groups (see :func:`split_series`)."""
    return {
        "matrix": f"{h.columns}x{h.rows}",
        "pixel_spacing": None if h.pixel_spacing is None else
        "\\".join(f"{v:.4f}" for v in h.pixel_spacing),
        "pixel_format": "spp={} bits={} signed={} {}".format(*_pixel_format(h)),
        "SeriesNumber": h.series_number,
        "ImageType": _image_kind(h.image_type),
        # diffusion trace/isotropic images (vendor.diffusion): never with the DWI volumes
        "DiffusionTrace": h.extra.get("diffusion_trace"),
    }


def split_series(uid: str, hs: list, tol: geo.Tolerances) -> list:
    """Split one series into groups: matrix, pixel spacing, pixel format, orientation."""
    clusters: list = []  # [(keys, iop, [headers])]
    known: dict = {}  # the keys of each distinct combination of their header fields
    for h in hs:
        ps = h.pixel_spacing  # (-0.0 == 0.0 but prints differently)
        fields = (h.columns, h.rows, ps if ps is None or 0.0 not in ps else repr(ps),
                  _pixel_format(h), h.series_number, h.image_type,
                  h.extra.get("diffusion_trace"))
        keys = known.get(fields)
        if keys is None:
            keys = known[fields] = _split_keys(h)
        for ckeys, ciop, members in clusters:  # (an IOP equal to the cluster's is the same)
            if ckeys == keys and (ciop == h.iop or same_iop(ciop, h.iop, tol)):
                members.append(h)
                break
        else:
            clusters.append((keys, h.iop, [h]))
    # biggest groups first, then by first instance number, for stable readable labels
    clusters.sort(key=lambda c: (-len(c[2]), min((h.instance_number or 0) for h in c[2])))
    groups = []
    differing = {k for k in clusters[0][0] if len({str(c[0][k]) for c in clusters}) > 1}
    if len({None if c[1] is None else tuple(np.round(c[1], 4)) for c in clusters}) > 1:
        differing.add("orientation")
    for i, (keys, iop, members) in enumerate(clusters, start=1):
        split = {k: keys[k] for k in sorted(differing) if k in keys}
        if "orientation" in differing:
            split["orientation"] = None if iop is None else "\\".join(f"{v:.4f}" for v in iop)
        groups.append(Group(uid, i, members, split))
    return groups


#: Keys that tell apart images sharing a position, tried in this order.
REPEAT_KEYS = [
    ("image_type", "ImageType"), ("echo_numbers", "EchoNumbers"), ("echo_time", "EchoTime"),
    ("diffusion_bvalue", "DiffusionBValue"), ("diffusion_direction", "DiffusionGradientOrientation"),
    ("temporal_position", "TemporalPositionIdentifier"), ("trigger_time", "TriggerTime"),
    ("acquisition_number", "AcquisitionNumber"), ("multiframe_uid", "SOPInstanceUID"),
]


def _normal_positions(hs: list):
    """Positions along the normal, or None when the geometry is missing or invalid."""
    if any(h.ipp is None or h.iop is None for h in hs):
        return None
    return geo.normal_positions([h.ipp for h in hs], hs[0].iop)


def split_repeats(g: Group, skipped: list, tol: geo.Tolerances) -> list:
    """Split images that share a position into separate groups, never averaging them.

    First by a header key that tells them apart (echo, time point, acquisition, image type);
    what remains is split by rank (InstanceNumber) at each position.  Exact copies of one
    image (same SOPInstanceUID, header keys and pixels) were already dropped by
    :func:`resolve_copies`; images with different SOPInstanceUIDs are never dropped.
    """
    pos = _normal_positions(g.slices)
    if pos is None:
        return [g]
    clusters = geo.position_clusters(pos, tol.duplicate_mm)
    if all(len(c) == 1 for c in clusters):
        return [g]
    for attr, kw in REPEAT_KEYS:
        values = {getattr(h, attr) for h in g.slices}
        if len(values) > 1:
            out = []
            for v in sorted(values, key=lambda x: (x is None, sort_key(x))):
                members = [h for h in g.slices if getattr(h, attr) == v]
                shown = "\\".join(map(str, v)) if isinstance(v, tuple) else v
                sub = Group(g.series_uid, 0, members, {**g.split_keys, kw: shown},
                            repeat_key=kw)
                out += split_repeats(sub, skipped, tol)
            return out
    # Images at one position that no key tells apart (copies of one image were dropped by
    # resolve_copies; a different SOPInstanceUID is a different image): split by rank.
    members = g.slices
    ranks: dict = {}
    closeness = _instance_trend(members, pos, clusters)
    for c in clusters:
        ordered = sorted(c, key=lambda i: (closeness(i), members[i].instance_number or 0,
                                           members[i].path))
        for r, i in enumerate(ordered, start=1):
            ranks.setdefault(r, []).append(members[i])
    return [Group(g.series_uid, 0, hs, {**g.split_keys, "repeat": r}, repeat_key="repeat")
            for r, hs in ranks.items()]


def sort_key(v):
    """Key values that are numbers (or numeric text, e.g. EchoNumbers "10") sort as numbers,
    before everything else, which sorts as text."""
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def mark_partial(subs: list) -> None:
    """Repeats of one stack with fewer positions than the others: an interrupted acquisition."""
    full = max(len(g.slices) for g in subs)
    for g in subs:
        if len(g.slices) < full:
            g.findings.append(Finding(
                "PARTIAL_VOLUME", WARNING,
                f"{len(g.slices)} of {full} slice positions: a partial repeat (an interrupted "
                "acquisition, or an extra image); written on its own, never merged into a 4D "
                "volume", value=[len(g.slices), full]))


def _instance_trend(hs: list, pos: np.ndarray, clusters: list):
    """How far an image's InstanceNumber lies from the trend of the unambiguous slices.

    With no header key to tell repeats apart, the image that continues the numbering of the
    slices around it belongs with them; the others form the next volume(s).
    """
    single = [c[0] for c in clusters if len(c) == 1 and hs[c[0]].instance_number is not None]
    if len(single) < 2:
        return lambda i: 0.0
    x = pos[single]
    y = np.array([hs[i].instance_number for i in single], dtype=float)
    if np.ptp(x) == 0:
        return lambda i: 0.0
    slope, icpt = np.polyfit(x, y, 1)
    return lambda i: (abs(hs[i].instance_number - (slope * pos[i] + icpt))
                      if hs[i].instance_number is not None else np.inf)


def _pixel_problem(g: Group) -> Optional[Finding]:
    """Pixel data that the header says cannot be decoded (found when the header was read)."""
    bad = [h for h in g.slices if "pixel_problem" in h.extra]
    if not bad:
        return None
    return Finding("PIXEL_DATA_UNDECODABLE", ERROR,
                   f"{bad[0].path}: {bad[0].extra['pixel_problem']} ({len(bad)} of "
                   f"{len(g.slices)} file(s))", "(0002,0010)", bad[0].transfer_syntax)


#: Largest magnitude a float32 output voxel can hold.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _rescale_problem(g: Group) -> Optional[Finding]:
    """A non-finite or zero RescaleSlope, a non-finite RescaleIntercept, or a pair that takes
    stored values beyond float32: refused, naming the file, tag and value."""
    for h in g.slices:
        top = 2.0 ** min(64, max(1, h.bits_stored or h.bits_allocated))  # >= |stored value|
        checks = (("(0028,1053) 'Rescale Slope'", h.rescale_slope,
                   "a finite non-zero number", math.isfinite(h.rescale_slope)
                   and h.rescale_slope != 0),
                  ("(0028,1052) 'Rescale Intercept'", h.rescale_intercept, "a finite number",
                   math.isfinite(h.rescale_intercept)),
                  ("(0028,1053) 'Rescale Slope'", h.rescale_slope, "small enough that "
                   f"{top:.0f} x slope + intercept fits float32 ({FLOAT32_MAX:.4g})",
                   abs(h.rescale_slope) * top + abs(h.rescale_intercept) <= FLOAT32_MAX))
        for tag, value, rule, ok in checks:
            if not ok:
                return Finding("RESCALE_INVALID", ERROR,
                               f"{h.path}: a {tag} value of '{value:g}' is invalid, it must be "
                               f"{rule}; refusing rather than writing non-finite or constant "
                               "voxels", tag.split(" ")[0], repr(value))
    return None


def analyse_group(g: Group, tol: geo.Tolerances = geo.DEFAULT_TOLERANCES) -> None:
    """Run the geometry checks on a group, sort its slices, and add refusal findings."""
    f = g.first
    if len(g.split_keys) and len([k for k in g.split_keys if g.split_keys[k] is not None]):
        g.findings.append(Finding(
            "SERIES_SPLIT", INFO, "series split into groups by "
            + ", ".join(f"{k}={v}" for k, v in g.split_keys.items())))
    if f.unexpanded_frames:
        g.findings.append(Finding(
            "MULTIFRAME_NO_FUNCTIONAL_GROUPS", ERROR,
            f"{f.name}: a multi-frame image ((0028,0008) 'Number of Frames' = "
            f"{f.number_of_frames}) without per-frame functional groups: its frames have no "
            "positions, so it cannot be placed in patient space", "(0028,0008)",
            f.number_of_frames))
        return
    if (any("MOSAIC" in t.upper() for t in f.image_type) or f.mosaic_problem) \
            and f.tile is None:
        why = f.mosaic_problem or "its geometry is missing"
        g.findings.append(Finding(
            "MOSAIC_UNSUPPORTED", ERROR,
            f"{f.name}: a (0008,0008) 'Image Type' value of '{'/'.join(f.image_type)}' marks a "
            f"tiled mosaic (Siemens MOSAIC, UIH VFRAME) that cannot be demosaiced: {why}; "
            "refusing rather than writing the tiles as one slice", "(0008,0008)",
            "\\".join(f.image_type)))
        return
    missing = [(h, kw, tag) for h in g.slices for kw, tag in (
        ("ipp", "(0020,0032) 'Image Position (Patient)'"),
        ("iop", "(0020,0037) 'Image Orientation (Patient)'"),
        ("pixel_spacing", "(0028,0030) 'Pixel Spacing'")) if getattr(h, kw) is None]
    if missing:
        h = missing[0][0]
        tags = sorted({tag for _, _, tag in missing})
        files = len({id(m[0]) for m in missing})
        g.findings.append(Finding(
            "NO_GEOMETRY", ERROR,
            f"{h.name}: {' and '.join(tags)} missing in {files} of {len(g.slices)} file(s); "
            "without it the image cannot be placed in patient space, and dicomrecon does not "
            "invent a geometry", missing[0][2].split(" ")[0]))
        return
    colour_ok = f.samples_per_pixel == 3 and f.bits_allocated == 8 and (
        f.photometric == "RGB" or not f.is_native)  # compressed YBR is decoded to RGB
    if f.samples_per_pixel != 1 and not colour_ok:
        g.findings.append(Finding(
            "COLOR_UNSUPPORTED", ERROR,
            f"{f.name}: a (0028,0002) 'Samples per Pixel' value of '{f.samples_per_pixel}' with "
            f"(0028,0004) 'Photometric Interpretation' '{f.photometric}' and {f.bits_allocated}-bit "
            "samples is not supported: only 1 sample, or 8-bit RGB (uncompressed RGB, or "
            "compressed colour decoded to RGB)", "(0028,0002)", f.samples_per_pixel))
        return
    for check in (_pixel_problem, _rescale_problem):
        finding = check(g)
        if finding is not None:
            g.findings.append(finding)
            return
    ipps = np.array([h.ipp for h in g.slices])
    iop = np.mean([h.iop for h in g.slices], axis=0)
    tilts = [h.gantry_tilt for h in g.slices if h.gantry_tilt is not None]
    geom = geo.analyse_stack(ipps, iop, f.pixel_spacing,
                             gantry_tilt_tag=tilts[0] if tilts else None, tol=tol)
    g.geometry = geom
    g.slices = [g.slices[i] for i in geom.order]
    g.findings.extend(geom.findings)
    if not geom.ok:
        return
    if len(g.slices) == 1:
        g.findings.append(Finding(
            "SINGLE_SLICE", WARNING,
            "a single slice: the slice-axis spacing is the (0018,0050) 'Slice Thickness' "
            + (f"value '{f.slice_thickness}'" if f.slice_thickness is not None else
               "(absent here, so 1 mm)"), "(0018,0050)", f.slice_thickness))
