"""Compare two voxel grids in world coordinates (test helper, independent of dicomrecon).

Two images "are the same grid" when every voxel centre of one is a voxel centre of the other:
``M = inv(A_other) @ A_ref`` (both affines index -> mm) is then a signed permutation matrix
plus an integer translation, i.e. ``other_index = M @ ref_index``.  This module finds that
mapping (or says why there is none) and re-indexes the other array onto the reference grid,
so the two can be compared value for value.

Arrays are indexed like the affines: ``array[i, j, k]`` is the voxel at index ``(i, j, k)``
(nibabel's convention; for a dicomrecon numpy volume (nz, ny, nx), transpose first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class GridMismatch(AssertionError):
    """The two grids are not the same set of world points; the message says how."""


@dataclass(frozen=True)
class IndexMap:
    """``other_index[r] = sign[r] * ref_index[perm[r]] + offset[r]`` for r = 0, 1, 2."""

    perm: tuple
    sign: tuple
    offset: tuple

    def matrix(self) -> np.ndarray:
        m = np.zeros((4, 4))
        for r in range(3):
            m[r, self.perm[r]] = self.sign[r]
            m[r, 3] = self.offset[r]
        m[3, 3] = 1.0
        return m

    def apply(self, ref_index) -> np.ndarray:
        """Map (..., 3) reference indices to other-grid indices."""
        idx = np.asarray(ref_index)
        return np.stack([self.sign[r] * idx[..., self.perm[r]] + self.offset[r]
                         for r in range(3)], axis=-1)


def index_mapping(a_ref: np.ndarray, a_other: np.ndarray, tol: float = 1e-3) -> IndexMap:
    """The signed-permutation + integer-shift map from ``a_ref``'s indices to ``a_other``'s.

    a_ref, a_other : (4, 4) affines (index -> world mm, the same world frame for both)
    tol : largest allowed deviation of any element of ``M = inv(a_other) @ a_ref`` from a
          signed permutation with integer translation, in index units.

    Raises :class:`GridMismatch` when the grids differ (scale, rotation, sub-voxel shift).
    """
    a_ref = np.asarray(a_ref, dtype=float)
    a_other = np.asarray(a_other, dtype=float)
    if a_ref.shape != (4, 4) or a_other.shape != (4, 4):
        raise ValueError("affines must be (4, 4)")
    m = np.linalg.inv(a_other) @ a_ref
    lin = m[:3, :3]
    rounded = np.rint(lin)
    perm, sign = [], []
    for r in range(3):
        nz = np.flatnonzero(rounded[r])
        if len(nz) != 1 or abs(rounded[r, nz[0]]) != 1:
            raise GridMismatch(f"M = inv(A_other) @ A_ref is not a signed permutation: row {r} "
                               f"is {np.array2string(lin[r], precision=6)}\nM =\n{m}")
        perm.append(int(nz[0]))
        sign.append(int(rounded[r, nz[0]]))
    if sorted(perm) != [0, 1, 2]:
        raise GridMismatch(f"M maps two reference axes onto one other axis: perm {perm}\nM =\n{m}")
    err_lin = float(np.max(np.abs(lin - rounded)))
    if err_lin > tol:
        raise GridMismatch(f"M's linear part differs from a signed permutation by {err_lin:.3g} "
                           f"(> {tol}): the voxel sizes or directions differ\nM =\n{m}")
    t = m[:3, 3]
    t_int = np.rint(t)
    err_t = float(np.max(np.abs(t - t_int)))
    if err_t > tol:
        raise GridMismatch(f"M's translation {np.array2string(t, precision=6)} is not integer "
                           f"(off by {err_t:.3g} voxel > {tol}): the grids are shifted by a "
                           f"fraction of a voxel\nM =\n{m}")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-9):
        raise GridMismatch(f"M is not affine: last row {m[3]}")
    return IndexMap(tuple(perm), tuple(sign), tuple(int(v) for v in t_int))


def reindex(other: np.ndarray, mapping: IndexMap, ref_shape) -> np.ndarray:
    """``other`` resampled (exactly, by index) onto the reference grid of shape ``ref_shape``.

    Requires that the reference grid maps onto exactly the whole of ``other``'s grid (same
    voxel count along each mapped axis, no part outside); raises :class:`GridMismatch` if not.
    Axes of ``other`` after the first three (e.g. RGB channels) are carried along unchanged;
    pick one time point of a 4D image before calling.
    """
    other = np.asarray(other)
    ref_shape = tuple(int(s) for s in ref_shape)[:3]
    if other.ndim < 3 or len(ref_shape) != 3:
        raise GridMismatch(f"reindex needs 3D arrays, got {other.shape} and {ref_shape}")
    for r in range(3):
        n_ref = ref_shape[mapping.perm[r]]
        if other.shape[r] != n_ref:
            raise GridMismatch(f"other axis {r} has {other.shape[r]} voxels but maps onto "
                               f"reference axis {mapping.perm[r]} with {n_ref}: different slice "
                               f"sets / matrices")
        ends = sorted([mapping.offset[r], mapping.sign[r] * (n_ref - 1) + mapping.offset[r]])
        if ends != [0, other.shape[r] - 1]:
            raise GridMismatch(f"reference axis {mapping.perm[r]} maps to other indices "
                               f"{ends[0]}..{ends[1]} on axis {r}, not 0..{other.shape[r] - 1}: "
                               "the grids overlap only partly")
    # other axis r <- reference axis perm[r]; bring other into reference axis order, then flip.
    inv = [0, 0, 0]
    for r in range(3):
        inv[mapping.perm[r]] = r
    # out axis a = other axis inv[a], which holds ref axis a
    out = np.transpose(other, inv + list(range(3, other.ndim)))
    for a in range(3):
        if mapping.sign[inv[a]] < 0:
            out = np.flip(out, axis=a)
    assert out.shape[:3] == ref_shape
    return out


def same_world_grid(a_ref, shape_ref, a_other, shape_other, tol: float = 1e-3) -> IndexMap:
    """:func:`index_mapping` plus a check that the grids cover the same voxels."""
    mapping = index_mapping(a_ref, a_other, tol)
    reindex(np.empty(tuple(shape_other)[:3], dtype=np.uint8), mapping, tuple(shape_ref)[:3])
    return mapping
