"""Decide, for one group and a policy, which volumes to write and how, or why to refuse.

Discovery states facts (tilt, spacing, duplicates); this module applies the user's policy:

=============  ==========================================================================
tilt           ``resample`` (default): resample onto an orthogonal grid along the true normal;
               ``preserve``: write the exact sheared grid (NIfTI sform, NRRD; not MHA);
               ``refuse``: write nothing for a tilted group.
irregular      ``resample`` (default): resample onto a regular grid, interpolating across
               missing slices, but split the volume at any gap wider than ``max_gap`` times
               the median step, where there is no data to interpolate from;
               ``split``: write each regularly spaced run as its own volume;
               ``refuse``: write nothing for an irregular group.
spacing        output slice spacing when resampling: ``median`` (default) or ``min`` of the
               source steps, or a number of mm.
interpolation  ``linear`` (default) or ``nearest`` (label images).
max_gap        3.0: a step more than 3x the median step is a hole in the data, not a
               spacing: it is never filled, the volume is split there (and reported).
=============  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from . import geometry as geo
from .discovery import Group
from .geometry import ERROR, WARNING, Finding

TILT_POLICIES = ("resample", "preserve", "refuse")
IRREGULAR_POLICIES = ("resample", "split", "refuse")


@dataclass(frozen=True)
class Policy:
    tilt: str = "resample"
    irregular: str = "resample"
    spacing: Union[str, float] = "median"
    interpolation: str = "linear"
    max_gap: float = 3.0
    merge_4d: bool = False        # --4d: repeats of one grid (time, echo, ...) as one 4D NIfTI
    no_geometry: bool = False     # --no-geometry: write images without IPP/IOP, flagged
    engine: str = "auto"          # --engine: decoder (auto or itk); never changes a voxel

    def __post_init__(self):
        if self.tilt not in TILT_POLICIES:
            raise ValueError(f"tilt policy {self.tilt!r}: choose one of {', '.join(TILT_POLICIES)}")
        if self.irregular not in IRREGULAR_POLICIES:
            raise ValueError(f"irregular policy {self.irregular!r}: choose one of "
                             f"{', '.join(IRREGULAR_POLICIES)}")
        if self.interpolation not in ("linear", "nearest"):
            raise ValueError(f"interpolation {self.interpolation!r}: choose linear or nearest")
        if self.engine not in ("auto", "itk"):
            raise ValueError(f"engine {self.engine!r}: choose auto or itk")
        if not self.max_gap > 1:
            raise ValueError(f"max_gap must be above 1 (times the median step), got {self.max_gap}")

    def to_dict(self) -> dict:
        return {"tilt": self.tilt, "irregular": self.irregular, "spacing": self.spacing,
                "interpolation": self.interpolation, "max_gap": self.max_gap,
                "merge_4d": self.merge_4d, "no_geometry": self.no_geometry}


DEFAULT_POLICY = Policy()


@dataclass
class VolumePlan:
    """One output volume: which slices, and whether they are stacked, sheared or resampled."""

    group: Group
    slices: list                     # SliceHeader, ascending along the normal
    geometry: Optional[geo.StackGeometry]  # of exactly these slices (None: placeholder)
    kind: str                        # "stack", "sheared", "resample" or "placeholder"
    part: Optional[int] = None       # 1-based when the group is split into several volumes
    findings: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.group.label + (f"p{self.part}" if self.part else "")


@dataclass
class GroupPlan:
    group: Group
    volumes: list
    refusals: list                   # error findings; empty when something is written

    @property
    def refused(self) -> bool:
        return bool(self.refusals)


def _refuse(group: Group, code: str, message: str, **kw) -> GroupPlan:
    return GroupPlan(group, [], [Finding(code, ERROR, message, **kw)])


def plan_group(group: Group, policy: Policy = DEFAULT_POLICY) -> GroupPlan:
    if group.refused and policy.no_geometry and {f.code for f in group.reasons} == {"NO_GEOMETRY"}:
        slices = sorted(group.slices, key=lambda h: (h.instance_number or 0, h.frame, h.path))
        return GroupPlan(group, [VolumePlan(group, slices, None, "placeholder", None, [Finding(
            "NO_GEOMETRY_PLACEHOLDER", WARNING,
            "written with --no-geometry: the affine is a PLACEHOLDER (identity orientation, "
            "origin 0, PixelSpacing or 1 mm), NOT a position in patient space; slices are in "
            "InstanceNumber order")])], [])
    if group.refused:
        return GroupPlan(group, [], group.reasons)
    geom = group.geometry
    s = geom.spacing
    runs = [list(range(len(group.slices)))]
    notes: list = []
    if len(group.slices) > 1 and not s.regular:
        desc = (f"irregular slice spacing ({s.minimum:.4g}/{s.nominal:.4g}/{s.maximum:.4g} mm "
                f"min/median/max" + (f", {s.missing} missing slice(s)" if s.missing else "") + ")")
        if policy.irregular == "refuse":
            return _refuse(group, "REFUSED_IRREGULAR",
                           f"{desc}; refused by --irregular refuse (resample or split would "
                           "place every slice correctly)", tag="(0020,0032)",
                           value=[s.minimum, s.nominal, s.maximum])
        if policy.irregular == "split":
            runs = _regular_runs(geom.positions, geo.DEFAULT_TOLERANCES.spacing_rel)
            notes.append(Finding("SPLIT_IRREGULAR", WARNING,
                                 f"{desc}: split into {len(runs)} regularly spaced volume(s)"))
        else:
            runs, gaps = _split_at_gaps(geom.positions, s.nominal, policy.max_gap)
            if gaps:
                notes.append(Finding(
                    "SPLIT_AT_GAP", WARNING,
                    f"{len(gaps)} gap(s) wider than {policy.max_gap:g} x the median step "
                    f"{s.nominal:.4g} mm (" + ", ".join(f"{g:.4g} mm" for g in gaps) +
                    f"): no data to interpolate from, so the volume is split there into "
                    f"{len(runs)} volumes", tag="(0020,0032)", value=gaps,
                    tolerance=policy.max_gap))
            if s.missing:
                notes.append(Finding(
                    "INTERPOLATED_MISSING", WARNING,
                    f"{s.missing} missing slice(s) (steps at whole multiples of the median "
                    f"{s.nominal:.4g} mm) are interpolated from their neighbours along the normal",
                    value=s.missing))
    if geom.is_tilted and policy.tilt == "refuse":
        return _refuse(group, "REFUSED_TILT",
                       f"gantry tilt of {geom.tilt_deg:.3g} deg; refused by --tilt refuse "
                       "(resample or preserve would place every voxel correctly)",
                       tag="(0020,0032)", value=round(geom.tilt_deg, 4))
    plans = []
    for n, run in enumerate(runs, start=1):
        sl = [group.slices[i] for i in run]
        sub = geo.analyse_stack(np.array([h.ipp for h in sl]), geom.orientation.row.tolist()
                                + geom.orientation.col.tolist(), geom.pixel_spacing,
                                gantry_tilt_tag=geom.tilt_tag_deg)
        regular = sub.spacing.regular and not sub.spacing.n_duplicates
        if geom.is_tilted and len(sl) > 1:
            if policy.tilt == "preserve":
                if not regular:
                    return _refuse(group, "REFUSED_PRESERVE_IRREGULAR",
                                   f"--tilt preserve needs regular spacing, but this tilted "
                                   f"stack has {notes[0].message if notes else 'irregular spacing'}"
                                   "; use --irregular split, or --tilt resample")
                kind = "sheared"
            else:
                kind = "resample"
        else:
            kind = "stack" if regular else "resample"
        plans.append(VolumePlan(group, sl, sub, kind, n if len(runs) > 1 else None, list(notes)))
    return GroupPlan(group, plans, [])


def _regular_runs(positions: np.ndarray, rel: float) -> list:
    """Split sorted positions into maximal runs whose steps agree within ``rel``."""
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


def _split_at_gaps(positions: np.ndarray, nominal: float, max_gap: float):
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


__all__ = ["Policy", "DEFAULT_POLICY", "VolumePlan", "GroupPlan", "plan_group"]
