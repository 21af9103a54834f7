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
max_voxels     2**31: the largest output grid (voxels, channels included) planned; a larger
               grid is refused before any pixel is decoded (``--max-voxels`` raises it).
=============  ==========================================================================

Slices lost to damage, and partial repeats, are never interpolated over: a group that lost a
file to damage (see :attr:`Group.damaged`) or a ``PARTIAL_VOLUME`` repeat is split at every
missing position instead, and each part says so in a finding (README "Damaged slices").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import numpy as np

from . import geometry as geo
from .discovery import Group
from .geometry import ERROR, WARNING, Finding

TILT_POLICIES = ("resample", "preserve", "refuse")
DEFAULT_MAX_VOXELS = 2 ** 31
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
    max_voxels: int = DEFAULT_MAX_VOXELS  # --max-voxels: largest output grid planned
    #: every geometry tolerance (--spacing-tolerance sets ``spacing_rel``); scan and plan both
    #: use these, so a stack is regular (or not) the same way in both
    tolerances: geo.Tolerances = geo.DEFAULT_TOLERANCES

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
        if not (isinstance(self.max_voxels, int) and self.max_voxels > 0):
            raise ValueError(f"max_voxels must be a positive integer, got {self.max_voxels!r}")
        if not isinstance(self.tolerances, geo.Tolerances):
            raise ValueError(f"tolerances must be a geometry.Tolerances, got {self.tolerances!r}")

    def to_dict(self) -> dict:
        return {"tilt": self.tilt, "irregular": self.irregular, "spacing": self.spacing,
                "interpolation": self.interpolation, "max_gap": self.max_gap,
                "merge_4d": self.merge_4d, "no_geometry": self.no_geometry,
                "max_voxels": self.max_voxels, "tolerances": asdict(self.tolerances)}


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
    shape_xyz: tuple = ()            # output grid (x, y, z), known before any pixel is decoded

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
    """How ``group`` becomes volumes under ``policy`` (stacked, sheared, resampled, split, or
    refused with findings).  The group must have been scanned with ``policy.tolerances``
    (``dicomrecon.scan(source, policy=policy)``), so that a stack regular in the scan is
    regular here; ValueError otherwise."""
    check_tolerances(group, policy)
    if group.refused and policy.no_geometry and {f.code for f in group.reasons} == {"NO_GEOMETRY"}:
        slices = sorted(group.slices, key=lambda h: (h.instance_number or 0, h.frame, h.path))
        vp = VolumePlan(group, slices, None, "placeholder", None, [Finding(
            "NO_GEOMETRY_PLACEHOLDER", WARNING,
            "written with --no-geometry: the affine is a PLACEHOLDER (identity orientation, "
            "origin 0, PixelSpacing or 1 mm), NOT a position in patient space; slices are in "
            "InstanceNumber order")])
        return _sized(GroupPlan(group, [vp], []), policy)
    if group.refused:
        return GroupPlan(group, [], group.reasons)
    geom = group.geometry
    runs, notes = _runs(group, policy)
    if isinstance(runs, GroupPlan):
        return runs
    if geom.is_tilted and policy.tilt == "refuse":
        return _refuse(group, "REFUSED_TILT",
                       f"gantry tilt of {geom.tilt_deg:.3g} deg; refused by --tilt refuse "
                       "(resample or preserve would place every voxel correctly)",
                       tag="(0020,0032)", value=round(geom.tilt_deg, 4))
    notes += _damage_notes(group)
    plans = []
    for n, run in enumerate(runs, start=1):
        sl = [group.slices[i] for i in run]
        sub = geo.analyse_stack(np.array([h.ipp for h in sl]), geom.orientation.row.tolist()
                                + geom.orientation.col.tolist(), geom.pixel_spacing,
                                gantry_tilt_tag=geom.tilt_tag_deg, tol=policy.tolerances)
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
        extra = [sheared_note(geom.tilt_deg)] if kind == "sheared" else []
        plans.append(VolumePlan(group, sl, sub, kind, n if len(runs) > 1 else None,
                                list(notes) + extra))
    return _sized(GroupPlan(group, plans, []), policy)


def sheared_note(tilt_deg: float) -> Finding:
    """What a --tilt preserve (sheared) output means for the tools that read it."""
    return Finding(
        "SHEARED_GRID", WARNING,
        f"the gantry tilt ({tilt_deg:.3g} deg) is kept as a sheared grid: SimpleITK/ITK cannot "
        "open the NIfTI (ITK needs an orthonormal direction; this sform is not one) and opens "
        "the NRRD with a non-orthonormal direction matrix; nibabel reads the NIfTI exactly. "
        "For ITK, use --tilt resample", tag="(0018,1120)", value=round(float(tilt_deg), 4))


def check_tolerances(group: Group, policy: Policy) -> None:
    """ValueError when ``group`` was scanned with other tolerances than ``policy`` carries."""
    if group.tolerances != policy.tolerances:
        raise ValueError(
            f"group {group.label} was scanned with {group.tolerances} but the policy carries "
            f"{policy.tolerances}: scan with the same tolerances (dicomrecon.scan(source, "
            "policy=policy), or discovery.scan(..., tol=policy.tolerances))")


def _runs(group: Group, policy: Policy):
    """``(runs of slice indices, findings)``, or ``(GroupPlan refusal, None)``."""
    s = group.geometry.spacing
    runs = [list(range(len(group.slices)))]
    notes: list = []
    if len(group.slices) < 2 or s.regular:
        return runs, notes
    desc = (f"irregular slice spacing ({s.minimum:.4g}/{s.nominal:.4g}/{s.maximum:.4g} mm "
            f"min/median/max" + (f", {s.missing} missing slice(s)" if s.missing else "") + ")")
    positions = group.geometry.positions
    if policy.irregular == "refuse":
        return _refuse(group, "REFUSED_IRREGULAR",
                       f"{desc}; refused by --irregular refuse (resample or split would "
                       "place every slice correctly)", tag="(0020,0032)",
                       value=[s.minimum, s.nominal, s.maximum]), None
    if policy.irregular == "split":
        runs = geo.regular_runs(positions, policy.tolerances.spacing_rel)
        notes.append(Finding("SPLIT_IRREGULAR", WARNING,
                             f"{desc}: split into {len(runs)} regularly spaced volume(s)"))
        return runs, notes
    runs, gaps = geo.split_at_gaps(positions, s.nominal, policy.max_gap)
    if gaps:
        notes.append(Finding(
            "SPLIT_AT_GAP", WARNING,
            f"{len(gaps)} gap(s) wider than {policy.max_gap:g} x the median step "
            f"{s.nominal:.4g} mm (" + ", ".join(f"{g:.4g} mm" for g in gaps) +
            f"): no data to interpolate from, so the volume is split there into "
            f"{len(runs)} volumes", tag="(0020,0032)", value=gaps, tolerance=policy.max_gap))
    if not s.missing:
        return runs, notes
    why = no_fill_reason(group)
    if why:
        runs, holes = geo.split_at_gaps(positions, s.nominal, min(policy.max_gap, 1.5))
        notes.append(Finding(
            "SPLIT_AT_MISSING", WARNING,
            f"{s.missing} missing slice(s) (steps at whole multiples of the median "
            f"{s.nominal:.4g} mm) are NOT interpolated because {why}: the volume is split at "
            f"each missing position into {len(runs)} volumes", tag="(0020,0032)", value=holes))
    else:
        notes.append(Finding(
            "INTERPOLATED_MISSING", WARNING,
            f"{s.missing} missing slice(s) (steps at whole multiples of the median "
            f"{s.nominal:.4g} mm) are interpolated from their neighbours along the normal",
            value=s.missing))
    return runs, notes


def no_fill_reason(group: Group) -> Optional[str]:
    """Why the missing slices of ``group`` must not be interpolated, or None."""
    if group.damaged:
        return (f"{len(group.damaged)} file(s) of this series were lost to damage "
                f"({', '.join(_name(p) for p, _ in group.damaged[:3])})")
    if any(f.code == "PARTIAL_VOLUME" for f in group.findings):
        return "this is a partial repeat (PARTIAL_VOLUME): its missing positions were not acquired"
    return None


def _name(path: str) -> str:
    import os
    return os.path.basename(path)


def _damage_notes(group: Group) -> list:
    """DAMAGED_SLICE: name the damaged files of this group's series in every part written."""
    if not group.damaged:
        return []
    return [Finding(
        "DAMAGED_SLICE", WARNING,
        f"{len(group.damaged)} file(s) of this series were damaged and are NOT in this volume "
        "(never interpolated over): " + "; ".join(f"{p}: {why}" for p, why in group.damaged),
        tag="(7FE0,0010)", value=[p for p, _ in group.damaged])]


# ------------------------------------------------------------------ output grid, before decoding
#: No output axis is longer than this, whatever --max-voxels says (a header or option error).
MAX_AXIS = 1 << 24


def output_shape(vp: VolumePlan, policy: Policy) -> tuple:
    """(x, y, z) of the grid ``vp`` will be written on, from the headers alone.

    Returns an axis length above :data:`MAX_AXIS` as is, without building the grid."""
    first = vp.slices[0]
    if vp.kind != "resample":
        return (first.columns, first.rows, len(vp.slices))
    from .resample import slice_spacing, target_grid
    geom = vp.geometry
    pos = geom.positions - geom.positions[0]
    if len(pos) > 1 and policy.spacing not in ("median", "min"):
        nz = int(np.floor(pos[-1] / slice_spacing(pos, policy.spacing) + 1e-6)) + 1
        if nz > MAX_AXIS or nz * first.rows * first.columns > policy.max_voxels:
            return (first.columns, first.rows, nz)
    nz, ny, nx = target_grid(geom.orientation, geom.pixel_spacing, geom.ipp_sorted,
                             (first.rows, first.columns), spacing=policy.spacing).shape_zyx
    return (nx, ny, nz)


def _sized(gp: GroupPlan, policy: Policy) -> GroupPlan:
    """Set each volume's output shape; refuse the group when one is over --max-voxels."""
    for vp in gp.volumes:
        vp.shape_xyz = output_shape(vp, policy)
        channels = vp.slices[0].samples_per_pixel
        voxels = int(np.prod(vp.shape_xyz, dtype=object)) * channels
        if voxels > policy.max_voxels or max(vp.shape_xyz) > MAX_AXIS:
            return _refuse(gp.group, "GRID_TOO_LARGE", grid_message(vp, policy, voxels),
                           value=list(vp.shape_xyz), tolerance=policy.max_voxels)
    return gp


def grid_message(vp: VolumePlan, policy: Policy, voxels: int) -> str:
    spacing = (f"--spacing {policy.spacing} gives " if vp.kind == "resample" else "")
    return (f"{spacing}an output grid of {'x'.join(map(str, vp.shape_xyz))} ({voxels:,} voxels) "
            f"for {vp.label}, more than --max-voxels {policy.max_voxels:,}"
            + (f" or {MAX_AXIS:,} along one axis" if max(vp.shape_xyz) > MAX_AXIS else "")
            + ": refused before decoding (raise --max-voxels, or choose a larger --spacing)")


def stack_affine(vp: VolumePlan):
    """LPS affine of a plan stacked as acquired (single slice: SliceThickness or 1 mm)."""
    thickness = vp.slices[0].slice_thickness
    return vp.geometry.affine(single_slice_spacing=thickness if thickness and thickness > 0 else 1.0)


__all__ = ["Policy", "DEFAULT_POLICY", "VolumePlan", "GroupPlan", "plan_group", "stack_affine"]
