"""FSL .bval/.bvec files: b-values and gradient directions relative to the written image.

Convention (FSL, as dcm2niix writes it):

* ``.bval``: one line, one b-value (s/mm²) per volume of the 4D file, in 4D order.
* ``.bvec``: three lines (x, y, z), one column per volume: the unit gradient direction
  expressed in the image's *voxel axes* (i, j, k of the NIfTI array), not in patient or
  scanner space: ``v = R.T @ g`` where ``g`` is the direction in patient space and ``R`` the
  affine's 3x3 with unit columns.
* If the NIfTI affine has a positive determinant (a "neurological" voxel order in FSL's
  terms), the x component is negated, because FSL handles such images as if their first voxel
  axis were flipped (FSL's internal radiological convention).
* b = 0 volumes and volumes without a direction get ``0 0 0``.

:func:`world_directions` is the exact inverse, used by the tests to compare two tools' bvecs
in patient space whatever axes each chose.
"""

from __future__ import annotations

import os

import numpy as np

from ..affines import LPS_TO_RAS


def _axes(affine_lps) -> np.ndarray:
    r = np.asarray(affine_lps, dtype=float)[:3, :3]
    return r / np.linalg.norm(r, axis=0)


def _flips_x(affine_lps) -> bool:
    """FSL flips x when the NIfTI (RAS) affine has a positive determinant."""
    return np.linalg.det((LPS_TO_RAS @ np.asarray(affine_lps, dtype=float))[:3, :3]) > 0


def fsl_bvecs(directions_lps, affine_lps) -> np.ndarray:
    """(3, N) FSL bvecs of (N, 3) unit directions in patient LPS coordinates (NaN or zero
    rows: no direction, written as 0 0 0) for an image with (4, 4) LPS ``affine_lps``.

    An LPS-aligned image (RAS affine diag(-1, -1, 1): determinant > 0) has x negated; its
    mirror image along x (RAS diag(1, -1, 1)) has not:

    >>> fsl_bvecs([[1, 0, 0]], np.eye(4)).T.tolist()
    [[-1.0, 0.0, 0.0]]
    >>> fsl_bvecs([[1, 0, 0]], np.diag([-1.0, 1, 1, 1])).T.tolist()
    [[-1.0, 0.0, 0.0]]
    """
    g = np.nan_to_num(np.asarray(directions_lps, dtype=float).reshape(-1, 3))
    v = g @ _axes(affine_lps)          # row n: R.T @ g_n
    if _flips_x(affine_lps):
        v[:, 0] = -v[:, 0]
    v[np.abs(v) < 5e-7] = 0.0
    return v.T


def world_directions(bvecs, affine_lps) -> np.ndarray:
    """(N, 3) LPS directions of (3, N) FSL bvecs for an image with LPS ``affine_lps``."""
    v = np.array(bvecs, dtype=float).reshape(3, -1).T.copy()
    if _flips_x(affine_lps):
        v[:, 0] = -v[:, 0]
    return v @ _axes(affine_lps).T


def _fmt(x: float) -> str:
    return f"{x:.6g}" if x != 0 else "0"


def write_bval_bvec(stem: str, bvals, directions_lps, affine_lps) -> tuple:
    """Write ``stem.bval`` and ``stem.bvec`` (temp file, then rename); returns their paths."""
    from ..writers import atomic_path
    bvec = fsl_bvecs(directions_lps, affine_lps)
    paths = (stem + ".bval", stem + ".bvec")
    texts = (" ".join(_fmt(float(b)) for b in bvals) + "\n",
             "".join(" ".join(_fmt(float(x)) for x in row) + "\n" for row in bvec))
    for path, text in zip(paths, texts):
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="ascii") as fp:
                fp.write(text)
    return tuple(os.path.basename(p) for p in paths)
