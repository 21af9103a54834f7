"""Find the DICOM images under a folder and group them into reconstructable volumes.

Files are grouped into series by SeriesInstanceUID (as GDCM's series discovery does), then each
series is split into acquisition groups that can each become one volume: the same orientation,
matrix size, pixel spacing and pixel format.  Every file that is not used is listed with its
reason in :attr:`ScanResult.skipped`.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from . import geometry as geo
from .errors import InputError
from .geometry import ERROR, INFO, WARNING, Finding
from .header_model import SliceHeader, SkipFile
from .headers import read_many

ProgressFn = Optional[Callable[[int, int], None]]


@dataclass
class Group:
    """Slices of one series that share orientation, matrix, spacing and pixel format."""

    series_uid: str
    index: int                      # 1-based within the series
    slices: list                    # SliceHeader, sorted along the normal once analysed
    split_keys: dict                # what distinguishes this group from its siblings
    geometry: Optional[geo.StackGeometry] = None
    findings: list = field(default_factory=list)
    family: int = 0                 # groups split from one stack by a repeat key share this
    repeat_key: Optional[str] = None  # the key that split them (EchoTime, TemporalPosition...)
    pixels: dict = field(default_factory=dict, repr=False)  # {instance_key: stored frame} read
    #: by the duplicate check (copies sharing a SOPInstanceUID: resolve_copies), not read again
    damaged: list = field(default_factory=list)  # [(path, reason)] of its slices lost to damage
    tolerances: geo.Tolerances = geo.DEFAULT_TOLERANCES  # what its geometry was checked with
    #: what must outlive the group for its files to exist (api.scan of pydicom Datasets: the
    #: temporary folder they were written to); None for files the caller owns
    keepalive: object = field(default=None, repr=False, compare=False)

    # --- derived -----------------------------------------------------------------------
    @property
    def first(self) -> SliceHeader:
        return self.slices[0]

    @property
    def refused(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    @property
    def reasons(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def label(self) -> str:
        n = self.first.series_number
        return f"{n if n is not None else '?'}.{self.index}"

    @property
    def shape_xyz(self) -> tuple:
        return (self.first.columns, self.first.rows, len(self.slices))

    def describe_orientation(self) -> str:
        if self.geometry is None or self.geometry.orientation is None:
            return "none"
        n = self.geometry.orientation.normal
        axis = ["sagittal", "coronal", "axial"][int(np.argmax(np.abs(n)))]
        ob = self.geometry.obliquity_deg
        return axis if ob < 0.5 else f"oblique {axis} ({ob:.1f} deg)"


@dataclass
class Series:
    uid: str
    groups: list

    @property
    def first(self) -> SliceHeader:
        return self.groups[0].first

    @property
    def number(self):
        return self.first.series_number

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def modality(self) -> str:
        return self.first.modality


@dataclass
class ScanResult:
    root: str
    series: list
    skipped: list                   # [(path, reason)]
    n_files: int
    keepalive: object = field(default=None, repr=False, compare=False)  # as Group.keepalive

    @property
    def groups(self) -> list:
        return [g for s in self.series for g in s.groups]

    def find_group(self, label: str) -> Group:
        for g in self.groups:
            if g.label == label:
                return g
        raise InputError(f"no group '{label}' in {self.root}; groups are: "
                         + ", ".join(g.label for g in self.groups))


# --------------------------------------------------------------------------------------------
def iter_files(root: str) -> list:
    """Every regular file below ``root`` (or ``root`` itself), sorted for a stable order: a
    folder's files by name, then its subfolders by name (as ``os.walk`` top-down visits them;
    symbolic links to folders are not followed, links to files are)."""
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise InputError(f"{root}: no such file or folder")
    out: list = []
    _walk(root, out)
    return out


def _walk(folder: str, out: list) -> None:
    """The files of ``folder`` into ``out``, then those of its subfolders.  The entries' types
    come from the directory listing (no stat per file, unlike ``os.path.isfile``)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:  # unreadable folder: skipped, as os.walk does
        return
    subdirs = []
    for e in entries:
        try:
            if e.is_dir():
                if not e.is_symlink():
                    subdirs.append(e.path)
            elif e.is_file():
                out.append(e.path)
        except OSError:
            continue
    for d in subdirs:
        _walk(d, out)


def scan(root: str, *, series_uid: Optional[str] = None, progress: ProgressFn = None,
         tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, engine: str = "auto") -> ScanResult:
    """Read every header under ``root`` and return its series, groups and skipped files.

    Headers only, except for files that share a SOPInstanceUID and header keys but not their
    bytes: those are decoded (with ``engine``), once, to tell a copy from a conflict; the kept
    copy's pixels stay on the group for decoding."""
    root = os.fspath(root)
    return scan_files(iter_files(root), root=root, series_uid=series_uid, progress=progress,
                      tol=tol, engine=engine)


def scan_files(files: list, *, root: str, series_uid: Optional[str] = None,
               progress: ProgressFn = None,
               tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, engine: str = "auto") -> ScanResult:
    """:func:`scan` of the given files; ``root`` is the folder their names are relative to."""
    headers, skipped, damaged = read_files(files, progress)
    if series_uid is not None:
        headers = [h for h in headers if h.series_instance_uid == series_uid]
        damaged = [d for d in damaged if d.series_uid in (None, series_uid)]
    series = group_headers(headers, skipped, tol, damaged, engine=engine)
    return ScanResult(root, series, skipped, len(files))


def read_files(files: list, progress: ProgressFn = None) -> tuple:
    """``(headers, skipped, damaged)`` of ``files`` (in order): their headers, ``[(path,
    reason)]`` for the files skipped, and a :class:`Damage` for each image lost to damage.

    :func:`scan` reads one folder with it; ``dicomrecon batch`` reads chunks of a whole archive
    with it in parallel, then groups them all with :func:`group_headers`.
    """
    headers, skipped, damaged = [], [], []
    for path, result in read_many(list(files), progress).items():  # GDCM reads them all at once
        if isinstance(result, SkipFile):
            skipped.append((path, str(result).removeprefix(path + ": ")))
            if result.damaged is not None:
                damaged.append(Damage(path, skipped[-1][1], **result.damaged))
        else:
            headers.extend(result)
    return headers, skipped, damaged


@dataclass
class Damage:
    """A DICOM image lost to damage, and what its header said about where it belonged."""

    path: str
    reason: str
    series_uid: Optional[str] = None
    ipp: Optional[tuple] = None
    iop: Optional[tuple] = None


def group_headers(headers: Iterable[SliceHeader], skipped: list,
                  tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, damaged: Iterable = (),
                  engine: str = "auto") -> list:
    by_uid: dict = {}
    pixels: dict = {}  # stored frames decoded to judge copies, reused when decoding
    kept, conflicts = resolve_copies(list(headers), skipped, engine, pixels)
    for h in kept:
        by_uid.setdefault(h.series_instance_uid, []).append(h)
    series = []
    for uid, hs in by_uid.items():
        groups = []
        for fam, g in enumerate(_split_series(uid, hs, tol)):
            subs = _split_repeats(g, skipped, tol)
            for sub in subs:
                sub.family = fam
            if len(subs) > 1:
                _mark_partial(subs)
            groups += subs
        counters: dict = {}
        for g in groups:  # numbered within each SeriesNumber, so labels read "7.1", "7.2", "8.1"
            counters[g.first.series_number] = g.index = counters.get(g.first.series_number, 0) + 1
            g.pixels = {h.instance_key: pixels[h.instance_key] for h in g.slices
                        if h.instance_key in pixels}
            g.tolerances = tol
            if not _refuse_conflicts(g, conflicts):
                analyse_group(g, tol)
        series.append(Series(uid, groups))
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    for d in damaged:
        attach_damage(d, series, tol)
    return series


# ------------------------------------------------------------------ copies and damaged files
#: Header values that tell images apart (the split and repeat keys discovery uses, plus
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


def _refuse_conflicts(g: Group, conflicts: dict) -> bool:
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
    if d.iop is not None and not _same_iop(d.iop, g.first.iop, tol):
        return False
    p = float(np.asarray(d.ipp, float) @ geom.orientation.normal)
    step = geom.spacing.nominal if np.isfinite(geom.spacing.nominal) else 0.0
    reach = 1.5 * step + tol.duplicate_mm
    return bool(geom.positions[0] - reach <= p <= geom.positions[-1] + reach)


def _same_iop(a, b, tol: geo.Tolerances) -> bool:
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
    """The header values that split a series into groups (see :func:`_split_series`)."""
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


def _split_series(uid: str, hs: list, tol: geo.Tolerances) -> list:
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
            if ckeys == keys and (ciop == h.iop or _same_iop(ciop, h.iop, tol)):
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


def _split_repeats(g: Group, skipped: list, tol: geo.Tolerances) -> list:
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
                out += _split_repeats(sub, skipped, tol)
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


def _mark_partial(subs: list) -> None:
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
