"""The diffusion table of a 4D volume: .bval/.bvec beside it and a sidecar record."""

from __future__ import annotations

from typing import Optional

from .fsl import write_bval_bvec


def volume_diffusion(plan):
    """The vendor.Diffusion of one volume plan (its first slice's; None if not diffusion)."""
    return plan.slices[0].extra.get("diffusion")


def write_diffusion(stem: str, plans: list, affine_lps) -> Optional[dict]:
    """Write ``stem.bval``/``stem.bvec`` for the volumes of a 4D diffusion series (in 4D
    order) and return the sidecar's ``diffusion`` record; None when no volume has a b-value.

    The .bvec is written only when every diffusion-weighted volume's direction is known in
    patient space; otherwise only the .bval, and the record says why.
    """
    table = [volume_diffusion(p) for p in plans]
    if all(d is None or d.b == 0 for d in table):
        return None  # not diffusion-weighted (GE writes b = 0 in every EPI image)
    missing = [i for i, d in enumerate(table) if d is None]
    if missing:
        return {"bval": None, "bvec": None, "note": f"volume(s) {missing} have no b-value: "
                "no .bval/.bvec written"}
    unknown = [d.note for d in table if d.note]
    bvals = [d.b for d in table]
    dirs = [d.direction if d.direction is not None else (float("nan"),) * 3 for d in table]
    bval, bvec = write_bval_bvec(stem, bvals, dirs, affine_lps)
    rec = {"bval": bval, "bvec": None if unknown else bvec,
           "convention": "FSL: bvec in the written image's voxel axes; x negated when the "
                         "NIfTI affine's determinant is positive (see README)",
           "b_values": bvals,
           "directions_lps": [None if d.direction is None else list(d.direction) for d in table],
           "sources": sorted({d.source for d in table}),
           "volumes": [d.to_dict() for d in table]}
    if unknown:
        import os
        os.unlink(stem + ".bvec")
        rec["note"] = unknown[0]
    return rec
