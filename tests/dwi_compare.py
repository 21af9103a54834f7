"""Compare dicomrecon's and dcm2niix's diffusion tables and BIDS keys in patient space.

Volumes are paired by their data, not by position in the 4D (the tools may order them
differently): each volume's sum of voxel values (scaled, so independent of which voxel axes
each tool chose) identifies it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import numpy as np

from dicomrecon.affines import LPS_TO_RAS
from dicomrecon.bids.fsl import world_directions


def run_dcm2niix(folder: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    exe = shutil.which("dcm2niix")
    subprocess.run([exe, "-b", "y", "-z", "n", "-f", "%s_%e", "-o", out, folder],
                   check=True, capture_output=True, timeout=120)


def load_scaled(path: str):
    """(scaled data (x, y, z[, t]), LPS affine) via nibabel (an independent reader)."""
    import nibabel as nib
    img = nib.load(path)
    return img.get_fdata(), LPS_TO_RAS @ img.affine


def read_table(stem: str, affine_lps):
    """(bvals (N,), world LPS directions (N, 3) or None) of ``stem.bval``/``stem.bvec``."""
    bvals = np.loadtxt(stem + ".bval", ndmin=1)
    if not os.path.exists(stem + ".bvec"):
        return bvals, None
    bvec = np.loadtxt(stem + ".bvec", ndmin=2).reshape(3, -1)
    return bvals, world_directions(bvec, affine_lps)


def volume_sums(data: np.ndarray) -> np.ndarray:
    d = data if data.ndim == 4 else data[..., None]
    return d.reshape(-1, d.shape[-1]).sum(axis=0)


def pair_volumes(ours: np.ndarray, theirs: np.ndarray, rel: float = 1e-5) -> list:
    """For each of our volume sums the index of the dcm2niix volume with the same sum."""
    out = []
    for s in ours:
        j = int(np.argmin(np.abs(theirs - s)))
        assert abs(theirs[j] - s) <= rel * max(1.0, abs(s)), (s, theirs)
        out.append(j)
    return out


def same_axis(a, b, tol: float = 1e-3) -> bool:
    """Two unit directions equal up to sign (a diffusion gradient and its opposite encode the
    same diffusion weighting; dcm2niix itself writes some vendors' vectors negated)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return min(np.abs(a - b).max(), np.abs(a + b).max()) <= tol


def dcm2niix_outputs(out: str) -> list:
    """dcm2niix's NIfTI stems (without .nii) in ``out``."""
    return sorted(p[:-4] for p in glob.glob(os.path.join(out, "*.nii")))


def load_json(path: str) -> dict:
    with open(path) as fp:
        return json.load(fp)
