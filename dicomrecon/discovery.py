"""Find the DICOM images under a folder and group them into reconstructable volumes.

Files are grouped into series by SeriesInstanceUID (as GDCM's series discovery does), then each
series is split into acquisition groups that can each become one volume: the same orientation,
matrix size, pixel spacing and pixel format.  Every file that is not used is listed with its
reason in :attr:`ScanResult.skipped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from . import geometry as geo
from .errors import InputError
from .geometry import ERROR, INFO, WARNING, Finding
from .headers import SliceHeader, SkipFile, read_header

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
    """Every regular file below ``root`` (or ``root`` itself), sorted for a stable order."""
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise InputError(f"{root}: no such file or folder")
    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.isfile(p):
                out.append(p)
    return out


def scan(root: str, *, series_uid: Optional[str] = None, progress: ProgressFn = None,
         tol: geo.Tolerances = geo.DEFAULT_TOLERANCES) -> ScanResult:
    """Read every header under ``root`` and return its series, groups and skipped files."""
    root = os.fspath(root)
    files = iter_files(root)
    headers, skipped = [], []
    for i, path in enumerate(files):
        try:
            headers.append(read_header(path))
        except SkipFile as exc:
            skipped.append((path, str(exc).removeprefix(path + ": ")))
        if progress:
            progress(i + 1, len(files))
    if series_uid is not None:
        headers = [h for h in headers if h.series_instance_uid == series_uid]
    series = group_headers(headers, skipped, tol)
    return ScanResult(root, series, skipped, len(files))


def group_headers(headers: Iterable[SliceHeader], skipped: list,
                  tol: geo.Tolerances = geo.DEFAULT_TOLERANCES) -> list:
    by_uid: dict = {}
    seen_sop: dict = {}
    for h in headers:
        if h.sop_instance_uid and h.sop_instance_uid in seen_sop:
            skipped.append((h.path, f"same (0008,0018) 'SOP Instance UID' '{h.sop_instance_uid}' "
                                    f"as {seen_sop[h.sop_instance_uid]}: a copy of one image"))
            continue
        seen_sop[h.sop_instance_uid] = h.path
        by_uid.setdefault(h.series_instance_uid, []).append(h)
    series = []
    for uid, hs in by_uid.items():
        groups = _split_series(uid, hs, tol)
        for g in groups:
            analyse_group(g, tol)
        series.append(Series(uid, groups))
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return series


def _pixel_format(h: SliceHeader) -> tuple:
    return (h.samples_per_pixel, h.bits_allocated, h.pixel_representation, h.photometric)


def _split_series(uid: str, hs: list, tol: geo.Tolerances) -> list:
    """Split one series into groups: matrix, pixel spacing, pixel format, orientation."""
    clusters: list = []  # [(keys, iop, [headers])]
    for h in hs:
        keys = {
            "matrix": f"{h.columns}x{h.rows}",
            "pixel_spacing": None if h.pixel_spacing is None else
            "\\".join(f"{v:.4f}" for v in h.pixel_spacing),
            "pixel_format": "spp={} bits={} signed={} {}".format(*_pixel_format(h)),
            "multiframe": h.sop_instance_uid if h.number_of_frames > 1 else None,
        }
        for ckeys, ciop, members in clusters:
            if ckeys == keys and ((ciop is None and h.iop is None) or (
                    ciop is not None and h.iop is not None and geo.same_orientation(ciop, h.iop, tol))):
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


def analyse_group(g: Group, tol: geo.Tolerances = geo.DEFAULT_TOLERANCES) -> None:
    """Run the geometry checks on a group, sort its slices, and add refusal findings."""
    f = g.first
    if len(g.split_keys) and len([k for k in g.split_keys if g.split_keys[k] is not None]):
        g.findings.append(Finding(
            "SERIES_SPLIT", INFO, "series split into groups by "
            + ", ".join(f"{k}={v}" for k, v in g.split_keys.items())))
    if f.number_of_frames > 1:
        g.findings.append(Finding(
            "MULTIFRAME_UNSUPPORTED", ERROR,
            f"{f.name}: enhanced / multi-frame image ((0028,0008) 'Number of Frames' = "
            f"{f.number_of_frames}) is not supported yet; refusing rather than guessing its "
            "frame geometry", "(0028,0008)", f.number_of_frames))
        return
    if any("MOSAIC" in t.upper() for t in f.image_type):
        g.findings.append(Finding(
            "MOSAIC_UNSUPPORTED", ERROR,
            f"{f.name}: a (0008,0008) 'Image Type' value of '{'/'.join(f.image_type)}' marks a "
            "tiled Siemens MOSAIC; demosaicing is not supported, refusing rather than writing tiles "
            "as one slice", "(0008,0008)", "\\".join(f.image_type)))
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
    if f.samples_per_pixel != 1:
        g.findings.append(Finding(
            "COLOR_UNSUPPORTED", ERROR,
            f"{f.name}: a (0028,0002) 'Samples per Pixel' value of '{f.samples_per_pixel}' "
            f"({f.photometric}) is not supported yet, only 1", "(0028,0002)", f.samples_per_pixel))
        return
    if f.bits_allocated == 1:
        g.findings.append(Finding(
            "BITS_UNSUPPORTED", ERROR,
            f"{f.name}: a (0028,0100) 'Bits Allocated' value of '1' (bit-packed) is not supported",
            "(0028,0100)", 1))
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
    _refuse_unsupported_geometry(g)
    if len(g.slices) == 1 and not g.refused:
        g.findings.append(Finding(
            "SINGLE_SLICE", WARNING,
            f"a single slice: the slice-axis spacing is the (0018,0050) 'Slice Thickness' "
            f"value '{f.slice_thickness}' (1 mm when absent)", "(0018,0050)", f.slice_thickness))


def _refuse_unsupported_geometry(g: Group) -> None:
    geom = g.geometry
    if geom.is_tilted:
        g.findings.append(Finding(
            "REFUSED_TILT", ERROR,
            f"gantry tilt of {geom.tilt_deg:.3g} deg: stacking these slices as an orthogonal "
            "volume would misplace voxels, and resampling tilted stacks is not supported yet",
            "(0020,0032)", round(geom.tilt_deg, 4)))
    if geom.spacing.n_duplicates:
        g.findings.append(Finding(
            "REFUSED_DUPLICATES", ERROR,
            f"{geom.spacing.n_duplicates} slice(s) share a position with another: these are "
            "separate acquisitions (echoes, time points or repeats) or copies, and splitting them "
            "is not supported yet", "(0020,0032)", geom.spacing.n_duplicates))
    elif not geom.spacing.regular:
        s = geom.spacing
        g.findings.append(Finding(
            "REFUSED_IRREGULAR", ERROR,
            f"irregular slice spacing ({s.minimum:.4g}/{s.nominal:.4g}/{s.maximum:.4g} mm "
            f"min/median/max, {s.missing} missing slice(s)): one spacing would misplace slices, "
            "and resampling is not supported yet", "(0020,0032)",
            [s.minimum, s.nominal, s.maximum]))
