"""Affine arithmetic: pure numpy, no DICOM stacks, no files.

The job of this module is what a (4, 4) affine alone can answer: map indices to patient
millimetres and back, split an affine into origin, spacing and direction, say whether its grid
is orthogonal and what DICOM slice geometry (IOP, IPPs, PixelSpacing) writes it, cut sub-grids,
and name or change its axis orientation by permuting and flipping axes (no resampling).
Modelled on nibabel's ``affines.py``.  Whether a stack of DICOM slices *is* a grid, and every
tolerance of that judgement, lives in :mod:`dicomrecon.geometry`; this module imports nothing
from dicomrecon.

Conventions (the same as ITK / SimpleITK for a DICOM series):

* index ``(x, y, z)`` = (column, row, slice); a numpy array of the volume has shape
  ``(nz, ny, nx)`` as ``SimpleITK.GetArrayFromImage`` gives;
* ``affine`` is a (4, 4) array mapping ``(x, y, z, 1)`` to patient LPS millimetres;
* PixelSpacing is ``[row spacing, column spacing]``, so x spacing is ``PixelSpacing[1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: LPS <-> RAS flip: ``ras_affine = LPS_TO_RAS @ lps_affine`` (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------------
# Affines
# --------------------------------------------------------------------------------------------
def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Flip an LPS affine to RAS (or back: the flip is its own inverse)."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=float)


ras_to_lps = lps_to_ras


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 3) points with a (4, 4) affine."""
    pts = np.asarray(points, dtype=float)
    return pts @ affine[:3, :3].T + affine[:3, 3]


def decompose_affine(affine: np.ndarray):
    """Split a (4, 4) affine into ``(origin (3,), spacing (3,), direction (3, 3))``.

    The direction has unit columns; it is orthonormal only for an unsheared grid.
    """
    m = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    return np.asarray(affine, dtype=float)[:3, 3].copy(), spacing, m / spacing


# --------------------------------------------------------------------------------------------
# Orthogonal grids and their DICOM slice geometry
# --------------------------------------------------------------------------------------------
#: |cos| between two grid axes above this is a shear (a non-orthogonal grid).
ORTHO_TOL = 1e-6


class GeometryError(ValueError):
    """A grid that cannot be what was asked (sheared, degenerate); the message says how."""


def is_orthogonal(direction: np.ndarray, tol: float = ORTHO_TOL) -> bool:
    """True when the (3, 3) unit-column direction's axes are perpendicular within ``tol``.

    >>> is_orthogonal(np.eye(3)), is_orthogonal(np.array([[1, 0, 0], [0, 1, 0.6], [0, 0, 0.8]]))
    (True, False)
    """
    d = np.asarray(direction, dtype=float)
    return bool(np.all(np.abs(d.T @ d - np.eye(3)) <= tol))


@dataclass(frozen=True)
class SliceGeometry:
    """Per-slice DICOM geometry of an orthogonal grid, slices ascending along the normal."""

    iop: np.ndarray            # (6,) row cosine (x axis), column cosine (y axis)
    ipps: np.ndarray           # (nz, 3) ImagePositionPatient of each written slice
    pixel_spacing: tuple       # (row spacing = y spacing, column spacing = x spacing)
    slice_spacing: float
    normal: np.ndarray         # cross(row, column)
    z_reversed: bool           # written slice k is volume slice nz - 1 - k


def slice_geometry(affine: np.ndarray, nz: int) -> SliceGeometry:
    """DICOM slice geometry of an index (x, y, z) -> LPS affine.

    Raises :class:`GeometryError` naming the angles when the grid is sheared or degenerate.

    >>> g = slice_geometry(np.diag([0.5, 0.6, 2.0, 1.0]), 3)
    >>> g.ipps[:, 2].tolist(), g.pixel_spacing, g.z_reversed
    ([0.0, 2.0, 4.0], (0.6, 0.5), False)
    >>> slice_geometry(np.diag([0.5, 0.6, -2.0, 1.0]), 3).ipps[:, 2].tolist()
    [-4.0, -2.0, 0.0]
    """
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise GeometryError(f"the affine {affine.tolist()} is not a finite (4, 4) matrix")
    if np.any(np.linalg.norm(affine[:3, :3], axis=0) == 0):
        raise GeometryError(f"the grid is degenerate: a zero voxel size in {affine.tolist()}")
    origin, spacing, direction = decompose_affine(affine)
    check_orthogonal(direction)
    row, col, zdir = direction[:, 0], direction[:, 1], direction[:, 2]
    normal = np.cross(row, col)
    reversed_ = float(np.dot(zdir, normal)) < 0
    k = np.arange(nz, dtype=float)
    if reversed_:
        k = k[::-1]
    ipps = origin + np.outer(k, affine[:3, 2])
    return SliceGeometry(np.concatenate([row, col]), ipps, (float(spacing[1]), float(spacing[0])),
                         float(spacing[2]), normal, reversed_)


def check_orthogonal(direction: np.ndarray) -> None:
    """Raise :class:`GeometryError` naming the shear when the unit axes are not perpendicular."""
    d = np.asarray(direction, dtype=float)
    cos = {"x-y": abs(float(d[:, 0] @ d[:, 1])), "x-z": abs(float(d[:, 0] @ d[:, 2])),
           "y-z": abs(float(d[:, 1] @ d[:, 2]))}
    worst = max(cos.values())
    if worst <= ORTHO_TOL:
        return
    angles = ", ".join(f"{k} {np.degrees(np.arccos(min(1.0, c))):.4g} deg"
                       for k, c in cos.items())
    n = np.cross(d[:, 0], d[:, 1])
    tilt = np.degrees(np.arccos(min(1.0, abs(float(n @ d[:, 2])) / max(np.linalg.norm(n), 1e-12))))
    raise GeometryError(
        f"the volume's grid is sheared: its axes are not perpendicular ({angles}; the z axis is "
        f"{tilt:.4g} deg from the slice normal), beyond |cos| {ORTHO_TOL:g}; a DICOM series "
        "for ordinary readers needs an orthogonal grid (resample it onto one first, e.g. "
        "dicomrecon convert --tilt resample)")


def patient_orientation(row: np.ndarray, col: np.ndarray) -> list:
    """PatientOrientation (0020,0020) letters of the row and column directions (LPS).

    >>> patient_orientation(np.array([1.0, 0, 0]), np.array([0, 0.6, -0.8]))
    ['L', 'FP']
    """
    letters = (("R", "L"), ("A", "P"), ("F", "H"))

    def one(v):
        order = np.argsort(-np.abs(v), kind="stable")
        return "".join(letters[i][int(v[i] > 0)] for i in order if abs(v[i]) > 1e-4)

    return [one(np.asarray(row, float)), one(np.asarray(col, float))]


# --------------------------------------------------------------------------------------------
# Index <-> world, sub-grids and reorientation (pure affine arithmetic, no resampling)
# --------------------------------------------------------------------------------------------
#: Patient-direction letters an axis can point towards, per LPS component: (-, +).
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))
_ALIASES = {"F": "I", "H": "S"}


def world_to_index(affine: np.ndarray, points) -> np.ndarray:
    """(..., 3) LPS mm to continuous (..., 3) indices (x, y, z) through the inverse affine.

    >>> world_to_index(np.diag([2.0, 3.0, 4.0, 1.0]), [[2.0, 6.0, 12.0]]).tolist()
    [[1.0, 2.0, 3.0]]
    """
    inv = np.linalg.inv(np.asarray(affine, dtype=float))
    return apply_affine(inv, points)


def subgrid_affine(affine: np.ndarray, start_xyz, step_xyz=(1, 1, 1)) -> np.ndarray:
    """Affine of the sub-grid that starts at index ``start_xyz`` and takes every
    ``step_xyz``-th voxel (a negative step runs the axis backwards).

    >>> subgrid_affine(np.diag([2.0, 3.0, 4.0, 1.0]), (1, 0, 2), (1, -1, 2))[:3] + 0.0
    array([[ 2.,  0.,  0.,  2.],
           [ 0., -3.,  0.,  0.],
           [ 0.,  0.,  8.,  8.]])
    """
    a = np.asarray(affine, dtype=float)
    out = a.copy()
    out[:3, :3] = a[:3, :3] * np.asarray(step_xyz, dtype=float)
    out[:3, 3] = apply_affine(a, np.asarray(start_xyz, dtype=float))
    return out


def axis_codes(affine: np.ndarray) -> str:
    """The patient direction (L/R, P/A, S/I) each index axis x, y, z increases towards.

    "LPS" is DICOM/ITK's identity orientation; NIfTI's usual "RAS" is its opposite.

    >>> axis_codes(np.diag([1.0, 1.0, 1.0, 1.0])), axis_codes(np.diag([-1.0, 1.0, -1.0, 1.0]))
    ('LPS', 'RPI')
    """
    m = np.asarray(affine, dtype=float)[:3, :3]
    perm, signs = _nearest_axes(m)
    return "".join(_LETTERS[perm[i]][signs[i] > 0] for i in range(3))


def _nearest_axes(m: np.ndarray):
    """For each column of ``m``: the LPS component it is closest to (a permutation) and sign."""
    unit = np.abs(m / np.linalg.norm(m, axis=0))
    perm = [-1, -1, -1]
    for _ in range(3):  # greedy: the most aligned (axis, component) pair first
        masked = unit.copy()
        masked[[c for c in perm if c >= 0], :] = -1
        masked[:, [i for i in range(3) if perm[i] >= 0]] = -1
        comp, axis = np.unravel_index(int(np.argmax(masked)), masked.shape)
        perm[axis] = int(comp)
    signs = [float(np.sign(m[perm[i], i])) or 1.0 for i in range(3)]
    return perm, signs


def normalise_codes(code: str) -> str:
    """Upper-case, F/H as I/S; raise ValueError unless one letter per patient axis.

    >>> normalise_codes("lph")
    'LPS'
    """
    c = "".join(_ALIASES.get(ch, ch) for ch in str(code).upper())
    axes = [next((k for k, pair in enumerate(_LETTERS) if ch in pair), None) for ch in c]
    if len(c) != 3 or None in axes or sorted(axes) != [0, 1, 2]:
        raise ValueError(f"orientation {code!r} is not three letters naming each patient axis "
                         "once (L/R, P/A, S/I; F/H for I/S), e.g. 'LPS' or 'RAS'")
    return c


def reorientation(affine: np.ndarray, shape_xyz, code: str):
    """How to reach orientation ``code`` by permuting and flipping axes, without resampling.

    Returns ``(order, flips, new_affine)``: new axis ``i`` is old axis ``order[i]``, flipped
    when ``flips[i]``; ``new_affine`` maps the new (x, y, z) indices to the same LPS points.

    >>> order, flips, a = reorientation(np.diag([1.0, 1.0, 1.0, 1.0]), (4, 5, 6), "RAS")
    >>> order, flips, a[:3, 3].tolist()
    ([0, 1, 2], [True, True, False], [3.0, 4.0, 0.0])
    """
    want = normalise_codes(code)
    have = axis_codes(affine)
    comp = lambda ch: next(k for k, pair in enumerate(_LETTERS) if ch in pair)  # noqa: E731
    order = [next(j for j in range(3) if comp(have[j]) == comp(want[i])) for i in range(3)]
    flips = [have[order[i]] != want[i] for i in range(3)]
    a = np.asarray(affine, dtype=float)
    shape = np.asarray(shape_xyz)
    new = np.eye(4)
    start = np.zeros(3)
    for i, j in enumerate(order):
        new[:3, i] = -a[:3, j] if flips[i] else a[:3, j]
        start[j] = shape[j] - 1 if flips[i] else 0
    new[:3, 3] = apply_affine(a, start)
    return order, flips, new


def same_grid(a_affine, a_shape, b_affine, b_shape, atol: float) -> bool:
    """Equal shapes and affines within ``atol`` (mm, and per direction component); callers pass
    ``geometry.Tolerances.same_grid_mm``, the one home of that tolerance."""
    return tuple(a_shape) == tuple(b_shape) and bool(
        np.allclose(np.asarray(a_affine, float), np.asarray(b_affine, float), atol=atol))
