"""Which volume plans --4d stacks along a 4th axis, in what order, and whether that axis is
time (README "Many volumes in one folder", "--4d")."""

from __future__ import annotations

import numpy as np

from .grouping import sort_key
from .plan import stack_affine

#: Split keys that --4d turns into the 4th axis, in the order volumes are sorted along it.
#: Echoes are a 4th axis only when nothing else varies (multi-echo fMRI: one 4D per echo).
FOURTH_AXIS_KEYS = ("DiffusionBValue", "DiffusionGradientOrientation",
                    "TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber",
                    "SOPInstanceUID", "repeat")
ECHO_KEYS = ("EchoNumbers", "EchoTime")
#: 4th-axis keys without a natural order: along them, volumes follow acquisition order.
UNORDERED_KEYS = ("DiffusionGradientOrientation", "SOPInstanceUID", "repeat")


def merge_sets(plans: list) -> list:
    """Volume plans that --4d writes as one 4D volume, each list ordered along the 4th axis.

    Members are repeats of one stack (same family and equal in every split key that is not a
    4th-axis key: image type, orientation, ...), stacked as acquired on the same grid (shape
    and affine), none partial.
    """
    buckets: dict = {}
    for vp in plans:
        g = vp.group
        if vp.kind != "stack" or g.repeat_key is None or vp.part or \
                any(f.code == "PARTIAL_VOLUME" for f in g.findings) or \
                vp.slices[0].samples_per_pixel != 1 or vp.slices[0].extra.get("diffusion_trace"):
            continue  # trace/isotropic diffusion images are never part of a 4D
        others = tuple(sorted((k, str(v)) for k, v in g.split_keys.items()
                              if k not in FOURTH_AXIS_KEYS + ECHO_KEYS))
        aff = np.round(stack_affine(vp), 3).tobytes()
        key = (g.family, others, len(vp.slices), vp.slices[0].rows, vp.slices[0].columns, aff)
        buckets.setdefault(key, []).append(vp)
    out = []
    for vps in buckets.values():
        varying, echoes = _varying(vps, FOURTH_AXIS_KEYS), _varying(vps, ECHO_KEYS)
        if varying and echoes:  # one 4D per echo, along the other keys
            per_echo: dict = {}
            for v in vps:
                per_echo.setdefault(tuple(str(v.group.split_keys.get(k)) for k in echoes),
                                    []).append(v)
            sets = list(per_echo.values())
        else:
            sets = [vps]
            varying = varying or echoes
        ordered = [k for k in varying if k not in UNORDERED_KEYS]
        for members in sets:
            if len(members) > 1:  # natural order of the keys, then acquisition order
                out.append(sorted(members, key=lambda v: tuple(
                    sort_key(v.group.split_keys.get(k)) for k in ordered) + (
                    min(h.instance_number or 0 for h in v.slices),)))
    return out


def fourth_axis_keys(plans: list) -> list:
    """The split keys whose values differ along a --4d set."""
    return _varying(plans, FOURTH_AXIS_KEYS + ECHO_KEYS)


def _varying(plans: list, keys: tuple) -> list:
    """Those of ``keys`` whose split-key values are not all equal across ``plans``."""
    return [k for k in keys if len({str(p.group.split_keys.get(k)) for p in plans}) > 1]


#: 4th-axis keys that are time: a --4d NIfTI along them carries TR in pixdim[4].
TIME_KEYS = ("TemporalPositionIdentifier", "AcquisitionNumber", "SOPInstanceUID", "repeat")


def time_axis_tr(vps: list):
    """The repetition time in seconds when the 4th axis of a --4d set is time (the volumes
    differ only in a time key, none is diffusion-weighted) and every volume has the same
    (0018,0080) RepetitionTime; else None (pixdim[4] stays 1, no time unit)."""
    keys = fourth_axis_keys(vps)
    if not keys or any(k not in TIME_KEYS for k in keys) or \
            any(getattr(vp.slices[0].extra.get("diffusion"), "b", 0) > 0 for vp in vps):
        return None
    trs = {vp.slices[0].extra.get("RepetitionTime") for vp in vps}
    tr = trs.pop() if len(trs) == 1 else None
    return float(tr) / 1000.0 if isinstance(tr, (int, float)) and tr > 0 else None
