"""Slice-stack geometry: pure numpy in, numpy and a report out.

This module knows nothing about files, pydicom or ITK.  It takes the plain numbers a DICOM
header carries - ImageOrientationPatient (IOP), ImagePositionPatient (IPP) of every slice,
PixelSpacing, GantryDetectorTilt - and says

* whether the orientation is a valid pair of orthonormal direction cosines,
* where each slice lies along the slice normal ``cross(row, col)`` and in which order,
* whether the stack is regular, has duplicates, missing slices or gaps,
* whether the slice origins drift in-plane (a sheared, gantry-tilted stack),
* and, for a stack that is a regular orthogonal grid, its LPS affine.

What an affine alone answers (index <-> world, orthogonality, the DICOM slice geometry of a grid,
sub-grids, reorientation) is in :mod:`dicomrecon.affines`, which imports nothing from here.

Conventions (the same as ITK / SimpleITK for a DICOM series):

* index ``(x, y, z)`` = (column, row, slice); a numpy array of the volume has shape
  ``(nz, ny, nx)`` as ``SimpleITK.GetArrayFromImage`` gives;
* ``affine`` is a (4, 4) array mapping ``(x, y, z, 1)`` to patient LPS millimetres;
* PixelSpacing is ``[row spacing, column spacing]``, so x spacing is ``PixelSpacing[1]``.

Every problem becomes a :class:`Finding` with a code, a severity and a message that names
the tag, the value found and the tolerance.  Nothing here returns ``None`` for "not a volume".
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Optional, Sequence

import numpy as np

INFO, WARNING, ERROR = "info", "warning", "error"


@dataclass(frozen=True)
class Tolerances:
    """Tolerances of the geometry checks; every one is reported in the messages that use it."""

    #: |norm - 1| allowed for each IOP direction cosine before it is an error.
    iop_norm: float = 1e-3
    #: |row . col| allowed before the IOP is an error (not orthogonal).
    iop_dot: float = 1e-3
    #: largest component difference for two IOPs to count as the same orientation.
    iop_same: float = 1e-4
    #: two slices closer than this along the normal (mm) are at the same position.
    duplicate_mm: float = 0.01
    #: a spacing step within this fraction of the nominal step is regular (1 %).
    spacing_rel: float = 0.01
    #: in-plane drift of slice origins allowed, as a fraction of the smallest pixel spacing.
    inplane_frac: float = 0.1
    #: |estimated tilt| and |GantryDetectorTilt| may differ by this many degrees.
    tilt_tag_deg: float = 0.5
    #: two grids are the same when every affine entry agrees within this (mm, or cosine*mm).
    same_grid_mm: float = 1e-4
    #: a written slice lies on a reference image's plane when its IPP is within this (mm);
    #: IOP and PixelSpacing must agree within ``same_grid_mm``.
    plane_match_mm: float = 1e-3
    #: an explicit slice spacing leaving more than this (mm) of the slab uncovered is reported.
    uncovered_mm: float = 1e-3


DEFAULT_TOLERANCES = Tolerances()


@dataclass(frozen=True)
class Finding:
    """One fact about a group: a stable code, a severity and a human message."""

    code: str
    severity: str
    message: str
    tag: Optional[str] = None
    value: Optional[object] = None
    tolerance: Optional[object] = None

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in asdict(self).items() if v is not None}


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _fmt(values, digits: int = 6) -> str:
    return "\\".join(f"{float(v):.{digits}g}" for v in np.ravel(values))


# --------------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Orientation:
    """Unit row and column direction cosines and the slice normal ``cross(row, col)``."""

    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) direction matrix, columns row, col, normal (ITK ``GetDirection`` order)."""
        return np.column_stack([self.row, self.col, self.normal])


def check_orientation(iop: Sequence[float], tol: Tolerances = DEFAULT_TOLERANCES):
    """Validate a six-value ImageOrientationPatient.

    iop : (6,) array-like
    Returns ``(orientation or None, findings)``; the orientation is ``None`` only when an
    error finding says why it cannot be used.

    >>> o, f = check_orientation([1, 0, 0, 0, 1, 0])
    >>> o.normal.tolist(), f
    ([0.0, 0.0, 1.0], [])
    """
    findings: list[Finding] = []
    v = np.asarray(iop, dtype=float).ravel()
    if v.size != 6 or not np.all(np.isfinite(v)):
        findings.append(Finding(
            "IOP_INVALID", ERROR,
            f"A (0020,0037) 'Image Orientation (Patient)' value of '{_fmt(v)}' is invalid, "
            "it must be 6 finite numbers", "(0020,0037)", v))
        return None, findings
    row, col = v[:3], v[3:]
    for name, vec in (("row", row), ("column", col)):
        n = float(np.linalg.norm(vec))
        if abs(n - 1.0) > tol.iop_norm:
            findings.append(Finding(
                "IOP_NOT_UNIT", ERROR,
                f"A (0020,0037) 'Image Orientation (Patient)' value of '{_fmt(v)}' is invalid, "
                f"its {name} cosine has length {n:.6g}, it must be 1 within {tol.iop_norm}",
                "(0020,0037)", v, tol.iop_norm))
    dot = float(np.dot(row, col))
    if abs(dot) > tol.iop_dot:
        findings.append(Finding(
            "IOP_NOT_ORTHOGONAL", ERROR,
            f"A (0020,0037) 'Image Orientation (Patient)' value of '{_fmt(v)}' is invalid, "
            f"row . column = {dot:.6g}, it must be 0 within {tol.iop_dot}",
            "(0020,0037)", v, tol.iop_dot))
    if findings:
        return None, findings
    # Re-orthonormalise the rounding noise away (Gram-Schmidt), keeping the row direction.
    row = row / np.linalg.norm(row)
    col = col - np.dot(col, row) * row
    col = col / np.linalg.norm(col)
    return Orientation(row, col, np.cross(row, col)), findings


def same_orientation(a: Sequence[float], b: Sequence[float],
                     tol: Tolerances = DEFAULT_TOLERANCES) -> bool:
    """True when two IOPs agree component-wise within ``tol.iop_same``."""
    return bool(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))) <= tol.iop_same)


def obliquity_deg(normal: np.ndarray) -> float:
    """Angle in degrees between a slice normal and the nearest patient axis."""
    return float(np.degrees(np.arccos(min(1.0, float(np.max(np.abs(normal)))))))


# --------------------------------------------------------------------------------------------
# Stack analysis
# --------------------------------------------------------------------------------------------
@dataclass
class SpacingStats:
    """Steps between successive distinct slice positions along the normal (mm)."""

    nominal: float          # median step; NaN with fewer than two distinct positions
    minimum: float
    maximum: float
    regular: bool           # every step within ``spacing_rel`` of ``nominal``
    n_duplicates: int       # slices at the position of the previous one
    missing: int            # slices missing where a step is an integer multiple of nominal
    gaps: list = field(default_factory=list)  # [(index after which, step mm)] irregular steps

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass
class StackGeometry:
    """What :func:`analyse_stack` found for one group of slices sharing one IOP."""

    orientation: Optional[Orientation]
    order: np.ndarray            # (N,) indices of the input slices, ascending along the normal
    positions: np.ndarray        # (N,) sorted positions along the normal (mm)
    ipp_sorted: np.ndarray       # (N, 3) IPP in sorted order
    pixel_spacing: np.ndarray    # (2,) [row spacing, column spacing]
    spacing: SpacingStats
    tilt_deg: float              # shear angle estimated from the IPPs (0 for a straight stack)
    shear: np.ndarray            # (3,) in-plane drift of the origin per mm along the normal
    tilt_tag_deg: Optional[float]
    obliquity_deg: float
    findings: list

    @property
    def ok(self) -> bool:
        """No error finding: the numbers describe one consistent stack."""
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def is_tilted(self) -> bool:
        return bool(np.any(self.shear != 0))

    @property
    def is_regular_grid(self) -> bool:
        """Consistent, not sheared, no duplicates, evenly spaced (or a single slice)."""
        s = self.spacing
        return self.ok and not self.is_tilted and s.regular and s.n_duplicates == 0

    def affine(self, single_slice_spacing: float = 1.0) -> np.ndarray:
        """(4, 4) LPS affine of the regular grid; raises ValueError if it is not one."""
        if not self.is_regular_grid:
            raise ValueError("the stack is not a regular orthogonal grid: "
                             + "; ".join(f.message for f in self.findings if f.severity != INFO))
        n = len(self.positions)
        dz = (self.positions[-1] - self.positions[0]) / (n - 1) if n > 1 else single_slice_spacing
        return lps_affine(self.orientation, self.pixel_spacing, dz, self.ipp_sorted[0])

    def to_dict(self) -> dict:
        o = self.orientation
        return {
            "n_slices": int(len(self.positions)),
            "row_cosine": _jsonable(o.row) if o else None,
            "column_cosine": _jsonable(o.col) if o else None,
            "slice_normal": _jsonable(o.normal) if o else None,
            "pixel_spacing": _jsonable(self.pixel_spacing),
            "slice_positions_mm": _jsonable(self.positions),
            "spacing": self.spacing.to_dict(),
            "tilt_deg_from_positions": self.tilt_deg,
            "tilt_deg_from_tag": self.tilt_tag_deg,
            "obliquity_deg": self.obliquity_deg,
            "findings": [f.to_dict() for f in self.findings],
        }


def analyse_stack(
    ipps: np.ndarray,
    iop: Sequence[float],
    pixel_spacing: Sequence[float],
    *,
    gantry_tilt_tag: Optional[float] = None,
    tol: Tolerances = DEFAULT_TOLERANCES,
) -> StackGeometry:
    """Sort and check a stack of slices that share one orientation.

    ipps : (N, 3) array-like - ImagePositionPatient of each slice, in any order
    iop : (6,) array-like - ImageOrientationPatient shared by the slices
    pixel_spacing : (2,) array-like - PixelSpacing [row spacing, column spacing] in mm
    gantry_tilt_tag : GantryDetectorTilt (0018,1120) in degrees, if the header has it
    """
    ipps = np.asarray(ipps, dtype=float).reshape(-1, 3)
    ps = np.asarray(pixel_spacing, dtype=float).ravel()
    orientation, findings = check_orientation(iop, tol)
    n = len(ipps)
    nan_stats = SpacingStats(np.nan, np.nan, np.nan, True, 0, 0)
    empty = dict(order=np.arange(n), positions=np.zeros(n), ipp_sorted=ipps, pixel_spacing=ps,
                 spacing=nan_stats, tilt_deg=0.0, shear=np.zeros(3),
                 tilt_tag_deg=gantry_tilt_tag, obliquity_deg=float("nan"))
    if ps.size != 2 or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
        findings.append(Finding(
            "PIXEL_SPACING_INVALID", ERROR,
            f"A (0028,0030) 'Pixel Spacing' value of '{_fmt(ps)}' is invalid, "
            "it must be two positive numbers", "(0028,0030)", ps))
    if not np.all(np.isfinite(ipps)):
        findings.append(Finding(
            "IPP_INVALID", ERROR,
            "A (0020,0032) 'Image Position (Patient)' value is not finite",
            "(0020,0032)", ipps[~np.all(np.isfinite(ipps), axis=1)][0]))
    if orientation is None or any(f.severity == ERROR for f in findings):
        return StackGeometry(orientation, findings=findings, **empty)

    d = ipps @ orientation.normal
    order = np.argsort(d, kind="stable")
    d = d[order]
    ipp_sorted = ipps[order]
    spacing, spacing_findings = _spacing_stats(d, tol)
    findings += spacing_findings
    tilt_deg, shear, tilt_findings = _shear(ipp_sorted, d, orientation, ps, gantry_tilt_tag, tol)
    findings += tilt_findings
    return StackGeometry(orientation, order, d, ipp_sorted, ps, spacing, tilt_deg, shear,
                         gantry_tilt_tag, obliquity_deg(orientation.normal), findings)


def median(x: np.ndarray) -> float:
    """``float(np.median(x))`` of a non-empty 1-D array (NaN when it holds a NaN), the same
    bits: the middle value, or the mean of the two middle values.  (np.median imports numpy.ma
    on its first call, ~20 ms of a header scan.)

    >>> median(np.array([3.0, 1.0, 2.0, 10.0])), median(np.array([2.0, np.nan, 1.0]))
    (2.5, nan)
    """
    s = np.sort(np.asarray(x, dtype=float))
    if np.isnan(s[-1]):
        return float("nan")
    k = s.size // 2
    return float(s[k]) if s.size % 2 else float((s[k - 1] + s[k]) / 2)


def _spacing_stats(d: np.ndarray, tol: Tolerances):
    findings: list[Finding] = []
    steps = np.diff(d)
    dup = steps < tol.duplicate_mm
    n_dup = int(np.count_nonzero(dup))
    if n_dup:
        findings.append(Finding(
            "DUPLICATE_POSITIONS", WARNING,
            f"{n_dup} slice(s) share a (0020,0032) 'Image Position (Patient)' with another slice "
            f"(closer than {tol.duplicate_mm} mm along the slice normal)",
            "(0020,0032)", n_dup, tol.duplicate_mm))
    distinct = steps[~dup]
    if distinct.size == 0:
        return SpacingStats(np.nan, np.nan, np.nan, True, n_dup, 0), findings
    nominal = median(distinct)
    lo, hi = float(distinct.min()), float(distinct.max())
    regular = bool(np.all(np.abs(distinct - nominal) <= tol.spacing_rel * nominal))
    missing, gaps = 0, []
    if not regular:
        after = np.flatnonzero(~dup)  # step distinct[i] lies between sorted slices after[i], +1
        for i, step in zip(after, distinct):
            ratio = step / nominal
            if abs(ratio - 1) <= tol.spacing_rel:
                continue
            gaps.append((int(i), float(step)))
            k = round(ratio)
            if k >= 2 and abs(ratio - k) <= tol.spacing_rel * k:
                missing += k - 1
        msg = (f"irregular slice spacing: steps along the normal range {lo:.6g} to {hi:.6g} mm "
               f"around a median of {nominal:.6g} mm (tolerance {tol.spacing_rel:.0%}); "
               f"{len(gaps)} irregular step(s)")
        if missing:
            msg += f", {missing} slice(s) apparently missing (steps at whole multiples of the median)"
        findings.append(Finding("IRREGULAR_SPACING", WARNING, msg, "(0020,0032)",
                                [lo, nominal, hi], tol.spacing_rel))
    return SpacingStats(nominal, lo, hi, regular, n_dup, missing, gaps), findings


def _shear(ipp_sorted, d, o: Orientation, ps, tag, tol: Tolerances):
    """In-plane drift of the slice origins: none, linear (gantry tilt), or inconsistent."""
    findings: list[Finding] = []
    atol = tol.inplane_frac * float(np.min(ps))
    dd = d - d[0]
    offsets = (ipp_sorted - ipp_sorted[0]) - np.outer(dd, o.normal)
    worst = float(np.max(np.linalg.norm(offsets, axis=1))) if len(d) else 0.0
    shear = np.zeros(3)
    tilt = 0.0
    if worst > atol:
        denom = float(np.dot(dd, dd))
        t = (offsets.T @ dd) / denom if denom > 0 else np.zeros(3)
        resid = float(np.max(np.linalg.norm(offsets - np.outer(dd, t), axis=1)))
        if denom > 0 and resid <= atol:
            shear = t
            tilt = float(np.degrees(np.arctan(np.linalg.norm(t))))
            findings.append(Finding(
                "GANTRY_TILT", WARNING,
                f"sheared stack: the (0020,0032) 'Image Position (Patient)' origins drift in-plane "
                f"by {np.linalg.norm(t):.4g} mm per mm along the slice normal, a gantry tilt of "
                f"{tilt:.3g} deg (straight within {atol:.3g} mm)", "(0020,0032)", round(tilt, 4), atol))
        else:
            findings.append(Finding(
                "INCONSISTENT_POSITIONS", ERROR,
                f"the (0020,0032) 'Image Position (Patient)' origins wander in-plane by up to "
                f"{worst:.4g} mm, neither a straight nor a uniformly sheared stack (tolerance "
                f"{atol:.3g} mm): these slices are not one volume", "(0020,0032)", worst, atol))
    if tag is not None and np.isfinite(tag):
        if abs(abs(tilt) - abs(tag)) > tol.tilt_tag_deg and len(d) > 1:
            findings.append(Finding(
                "TILT_TAG_MISMATCH", WARNING if tilt else INFO,
                f"A (0018,1120) 'Gantry/Detector Tilt' value of '{tag:g}' differs from the "
                f"{tilt:.3g} deg shear of the slice positions (tolerance {tol.tilt_tag_deg} deg); "
                "the positions are used", "(0018,1120)", tag, tol.tilt_tag_deg))
    return tilt, shear, findings


# --------------------------------------------------------------------------------------------
# The affine of a checked orientation (the arithmetic on affines is in affines.py)
# --------------------------------------------------------------------------------------------
def lps_affine(orientation: Orientation, pixel_spacing: Sequence[float], slice_step: float,
               origin: Sequence[float]) -> np.ndarray:
    """(4, 4) affine from index (x=column, y=row, z=slice) to LPS mm.

    >>> o, _ = check_orientation([1, 0, 0, 0, 1, 0])
    >>> lps_affine(o, [0.5, 0.7], 2.0, [10, 20, 30])[:3].tolist()
    [[0.7, 0.0, 0.0, 10.0], [0.0, 0.5, 0.0, 20.0], [0.0, 0.0, 2.0, 30.0]]
    """
    a = np.eye(4)
    a[:3, 0] = orientation.row * float(pixel_spacing[1])
    a[:3, 1] = orientation.col * float(pixel_spacing[0])
    a[:3, 2] = orientation.normal * float(slice_step)
    a[:3, 3] = np.asarray(origin, dtype=float)
    return a


# --------------------------------------------------------------------------------------------
# Stacks: positions, runs, grids (plain arrays in and out)
# --------------------------------------------------------------------------------------------
def normal_positions(ipps, iop) -> Optional[np.ndarray]:
    """(N,) positions of (N, 3) slice origins along the normal cross(row, column) of ``iop``;
    None when ``iop`` is not a valid orientation.

    >>> normal_positions([[0, 0, 5], [1, 2, 3]], [1, 0, 0, 0, 1, 0]).tolist()
    [5.0, 3.0]
    """
    o, _ = check_orientation(iop)
    if o is None:
        return None
    return np.asarray(ipps, dtype=float).reshape(-1, 3) @ o.normal


def position_clusters(positions, duplicate_mm: float) -> list:
    """Indices of ``positions`` grouped into runs closer than ``duplicate_mm`` (ascending).

    >>> position_clusters([3.0, 1.0, 1.005, 2.0], 0.01)
    [[1, 2], [3], [0]]
    """
    pos = np.asarray(positions, dtype=float)
    order = np.argsort(pos, kind="stable")
    out, cur = [], [int(order[0])]
    for a, b in zip(order[:-1], order[1:]):
        if pos[b] - pos[a] < duplicate_mm:
            cur.append(int(b))
        else:
            out.append(cur)
            cur = [int(b)]
    out.append(cur)
    return out


def regular_runs(positions, rel: float) -> list:
    """Sorted ``positions`` split into maximal runs of indices whose steps agree within
    ``rel`` (a fraction) of the run's first step.

    >>> regular_runs([0, 1, 2, 4, 6, 7], 0.01)
    [[0, 1, 2], [3, 4], [5]]
    """
    runs, cur, step = [], [0], None
    for i in range(1, len(positions)):
        d = positions[i] - positions[i - 1]
        if step is None or abs(d - step) <= rel * step:
            cur.append(i)
            step = d if step is None else step
        else:
            runs.append(cur)
            cur, step = [i], None
    runs.append(cur)
    return runs


def split_at_gaps(positions, nominal: float, max_gap: float):
    """``(runs, gaps)``: sorted ``positions`` split where a step exceeds ``max_gap`` times
    ``nominal``; ``gaps`` are those steps (mm).

    >>> split_at_gaps([0, 1, 2, 6, 7], 1.0, 3.0)
    ([[0, 1, 2], [3, 4]], [4.0])
    """
    runs, cur, gaps = [], [0], []
    for i in range(1, len(positions)):
        d = positions[i] - positions[i - 1]
        if d > max_gap * nominal:
            runs.append(cur)
            cur = []
            gaps.append(float(d))
        cur.append(i)
    runs.append(cur)
    return runs, gaps


def placeholder_affine(pixel_spacing, slice_thickness) -> np.ndarray:
    """Identity orientation, origin 0, ``pixel_spacing`` (row, column; 1 mm when None) and
    ``slice_thickness`` (1 mm when None or not positive): NOT patient space.

    >>> placeholder_affine((0.5, 0.7), None).diagonal().tolist()
    [0.7, 0.5, 1.0, 1.0]
    """
    ps = pixel_spacing or (1.0, 1.0)
    dz = slice_thickness if slice_thickness and slice_thickness > 0 else 1.0
    return np.diag([float(ps[1]), float(ps[0]), float(dz), 1.0])


def sheared_affine(orientation: Orientation, pixel_spacing, ipp_sorted) -> np.ndarray:
    """The exact sheared grid of a regular tilted stack: the z column is the mean step between
    the (N >= 2, 3) sorted slice origins, x and y the row and column directions.

    >>> o, _ = check_orientation([1, 0, 0, 0, 1, 0])
    >>> sheared_affine(o, (1, 1), [[0, 0, 0], [0, 0.5, 2], [0, 1, 4]])[:3, 2].tolist()
    [0.0, 0.5, 2.0]
    """
    ipp = np.asarray(ipp_sorted, dtype=float)
    aff = lps_affine(orientation, pixel_spacing, 1.0, ipp[0])
    aff[:3, 2] = (ipp[-1] - ipp[0]) / (len(ipp) - 1)
    return aff


def plane_lattice_origin(orientation: Orientation, pixel_spacing, origin, x0: float,
                         y0: float) -> np.ndarray:
    """LPS position of pixel (column ``x0``, row ``y0``) of a slice at ``origin``."""
    return (np.asarray(origin, float) + x0 * float(pixel_spacing[1]) * orientation.row
            + y0 * float(pixel_spacing[0]) * orientation.col)


def match_planes(planes_iop, planes_ipp, planes_ps, planes_shape_yx, iop, pixel_spacing,
                 shape_yx, ipps, tol: Tolerances = DEFAULT_TOLERANCES) -> Optional[list]:
    """Per target plane (``ipps`` (N, 3) with one ``iop``, ``pixel_spacing``, ``shape_yx``),
    the index of the one candidate plane it lies on exactly (same rows/columns, IOP and
    PixelSpacing within ``tol.same_grid_mm``, IPP within ``tol.plane_match_mm``); None when
    any target has no such plane or several.

    >>> match_planes([[1, 0, 0, 0, 1, 0]] * 2, [[0, 0, 1], [0, 0, 0]], [[1, 1]] * 2,
    ...              [[4, 4]] * 2, [1, 0, 0, 0, 1, 0], [1, 1], (4, 4), [[0, 0, 0], [0, 0, 1]])
    [1, 0]
    """
    if len(planes_iop) == 0:
        return None
    same = (np.all(np.asarray(planes_shape_yx) == tuple(shape_yx), axis=1)
            & np.all(np.abs(np.asarray(planes_iop, float) - np.asarray(iop, float))
                     <= tol.same_grid_mm, axis=1)
            & np.all(np.abs(np.asarray(planes_ps, float) - np.asarray(pixel_spacing, float))
                     <= tol.same_grid_mm, axis=1))
    ipp = np.asarray(planes_ipp, float)
    out = []
    for target in np.asarray(ipps, float).reshape(-1, 3):
        hits = np.flatnonzero(same & np.all(np.abs(ipp - target) <= tol.plane_match_mm, axis=1))
        if len(hits) != 1:
            return None
        out.append(int(hits[0]))
    return out
