"""Human and JSON views of a scan."""

from __future__ import annotations

import math

from .discovery import Group, ScanResult
from .geometry import INFO
from .plan import DEFAULT_POLICY, GroupPlan, Policy, plan_group


def _spacing(g: Group) -> str:
    f = g.first
    if g.geometry is None or f.pixel_spacing is None:
        return "-"
    s = g.geometry.spacing
    px = f"{f.pixel_spacing[1]:.3g}x{f.pixel_spacing[0]:.3g}"
    if len(g.slices) < 2 or math.isnan(s.nominal):
        return f"{px} mm"
    if s.regular and not s.n_duplicates:
        return f"{px}x{s.nominal:.4g} mm"
    return f"{px} mm, z {s.minimum:.4g}/{s.nominal:.4g}/{s.maximum:.4g} (min/med/max)"


def _tilt(g: Group) -> str:
    geom = g.geometry
    if geom is None:
        return "-"
    est = f"{geom.tilt_deg:.3g}" if geom.is_tilted else "0"
    tag = "" if geom.tilt_tag_deg is None else f" (tag {geom.tilt_tag_deg:g})"
    return est + tag


def _status(gp: GroupPlan) -> str:
    if gp.refused:
        return "REFUSED: " + " | ".join(f.code for f in gp.refusals)
    kinds = [v.kind for v in gp.volumes]
    what = kinds[0] if len(set(kinds)) == 1 else "/".join(kinds)
    if len(kinds) > 1:
        what = f"{len(kinds)} volumes: {what}"
    notes = [f.code for f in gp.group.findings + gp.volumes[0].findings if f.severity != INFO]
    return what + (f" ({', '.join(dict.fromkeys(notes))})" if notes else "")


def _split(g: Group, varying: set) -> str:
    """The split keys that tell ``g`` from its sibling groups, values in full (a value cut to
    a width would make two groups look the same); all of them when none varies."""
    keys = {k: v for k, v in g.split_keys.items() if v is not None}
    shown = {k: v for k, v in keys.items() if k in varying} or keys
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "-"


def _varying(groups: list) -> set:
    """Split keys whose values differ between the groups of one series."""
    keys = {k for g in groups for k in g.split_keys}
    return {k for k in keys if len({str(g.split_keys.get(k)) for g in groups}) > 1}


def scan_table(result: ScanResult, policy: Policy = DEFAULT_POLICY) -> str:
    header = ["group", "mod", "series", "size", "orientation", "spacing", "tilt deg", "split by",
              "convert would"]
    rows = []
    plans = {}
    for s in result.series:
        varying = _varying(s.groups)
        for g in s.groups:
            desc = (s.description or "")[:28]
            plans[g.label] = gp = plan_group(g, policy)
            rows.append([g.label, g.first.modality or "-", desc or "-",
                         "x".join(map(str, g.shape_xyz)), g.describe_orientation(),
                         _spacing(g), _tilt(g), _split(g, varying), _status(gp)])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    out = [f"{result.root}: {result.n_files} file(s), {len(result.series)} series, "
           f"{len(result.groups)} group(s), {len(result.skipped)} skipped", "",
           line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    details = list(dict.fromkeys(
        f"  {g.label} {f.severity} {f.code}: {f.message}" for g in result.groups
        for f in g.findings + plans[g.label].refusals + [
            x for v in plans[g.label].volumes for x in v.findings]
        if f.severity != INFO))
    if details:
        out += ["", "findings:"] + details
    if result.skipped:
        out += ["", "skipped files:"] + [f"  {p}: {why}" for p, why in result.skipped]
    return "\n".join(out)


#: The layout of ``dicomrecon scan --json``; raised when a key changes meaning or goes away.
SCAN_SCHEMA_VERSION = 1


def scan_json(result: ScanResult, policy: Policy = DEFAULT_POLICY) -> dict:
    plans = {g.label: plan_group(g, policy) for g in result.groups}
    return {
        "schema_version": SCAN_SCHEMA_VERSION,
        "policy": policy.to_dict(),
        "input": result.root,
        "files_read": result.n_files,
        "series": [{
            "series_instance_uid": s.uid, "series_number": s.number,
            "series_description": s.description, "modality": s.modality,
            "groups": [{
                "group": g.label, "n_files": len(g.slices), "shape_xyz": list(g.shape_xyz),
                "split_keys": g.split_keys, "orientation": g.describe_orientation(),
                "refused": plans[g.label].refused,
                "refusals": [f.to_dict() for f in plans[g.label].refusals],
                "volumes": [{"label": v.label, "reconstruction": v.kind,
                             "n_slices": len(v.slices),
                             "findings": [f.to_dict() for f in v.findings]}
                            for v in plans[g.label].volumes],
                "geometry": g.geometry.to_dict() if g.geometry else None,
                "findings": [f.to_dict() for f in g.findings],
                "files": [h.path for h in g.slices],
            } for g in s.groups],
        } for s in result.series],
        "skipped_files": [{"file": p, "reason": why} for p, why in result.skipped],
    }
