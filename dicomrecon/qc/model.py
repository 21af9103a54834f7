"""What QC needs from a conversion, as typed objects.

Every key of a sidecar (``NAME.json``) and of ``dicomrecon-report.json`` that QC reads is read
here and nowhere else, so the rest of :mod:`dicomrecon.qc` works on dataclasses.  A scan (no
sidecars) gives the same :class:`StackPositions` through :func:`positions_from_geometry`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from ..conversion import REPORT_NAME
from ..errors import InputError
from ..geometry import DEFAULT_TOLERANCES, StackGeometry


@dataclass(frozen=True)
class FindingText:
    code: str
    severity: str
    message: str


@dataclass
class StackPositions:
    """Source slice origins of one stack, sorted along the slice normal."""

    label: str
    ipps: np.ndarray                 # (N, 3) ImagePositionPatient, LPS mm
    positions: np.ndarray            # (N,) along the normal: IPP . normal (mm)
    row: np.ndarray                  # (3,) unit row direction (x)
    col: np.ndarray                  # (3,) unit column direction (y)
    normal: np.ndarray               # (3,) cross(row, col)
    nominal: float                   # median step (mm), NaN below two distinct positions
    tilt_deg: float = 0.0
    spacing_rel: float = DEFAULT_TOLERANCES.spacing_rel
    duplicate_mm: float = DEFAULT_TOLERANCES.duplicate_mm
    #: other parts of the same split group: [(label, positions (M,))]
    siblings: list = field(default_factory=list)


@dataclass(frozen=True)
class SourceSlice:
    path: str                        # absolute path of the source file
    sop_instance_uid: str
    index: int = 0                   # 0-based frame (multi-frame) or tile (mosaic)


@dataclass
class ResampleInfo:
    fill_value: float
    fill_voxels: int
    fill_fraction: float
    z_positions: np.ndarray          # (nz,) output slice positions rel. to source slice 0 (mm)
    src_offsets: np.ndarray          # (N, 2) (x, y) target pixels of each source origin
    interpolation: str
    spacing_mm: float


@dataclass
class SeriesInfo:
    uid: str
    number: Optional[int]
    description: str
    modality: str
    manufacturer: str


@dataclass
class VolumeInfo:
    """One written volume and its sidecar."""

    label: str                       # group label, e.g. "2.1" or "5.1p2"
    group: str                       # the source group ("5.1" for every part of it)
    sidecar: str                     # path of NAME.json
    path: str                        # path of the volume file
    fmt: str
    shape: tuple                     # (x, y, z) or (x, y, z, t)
    components: int                  # 3 for RGB
    affine: np.ndarray               # (4, 4) index (x, y, z) -> LPS mm
    reconstruction: str              # stack, sheared, resample, placeholder
    part: Optional[int]
    series: SeriesInfo
    split_keys: object               # dict, or one dict per 4D volume
    policy: dict
    findings: list                   # FindingText
    processing: list                 # str
    sources: list                    # SourceSlice, ascending along the normal
    positions: Optional[StackPositions]
    resample: Optional[ResampleInfo]
    fourth_axis: Optional[str] = None
    n_fourth: int = 1
    fourth_values: tuple = ()        # the 4th axis's value of each volume, as text

    @property
    def status(self) -> str:
        """The summary's colour: stack, resampled, split, sheared (--tilt preserve) or
        placeholder (--no-geometry)."""
        if self.part is not None:
            return "split"
        return {"resample": "resampled", "sheared": "sheared",
                "placeholder": "placeholder"}.get(self.reconstruction, "stack")


@dataclass
class RefusedInfo:
    group: str
    series_uid: str
    reasons: list                    # FindingText


@dataclass
class SkippedInfo:
    file: str
    reason: str


@dataclass
class ConversionQC:
    outdir: str
    input: str
    files_read: int
    volumes: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
def read_conversion(outdir: str) -> ConversionQC:
    """Read ``dicomrecon-report.json`` and every sidecar it lists."""
    outdir = os.path.abspath(outdir)
    report_path = os.path.join(outdir, REPORT_NAME)
    if not os.path.isfile(report_path):
        raise InputError(f"{outdir}: no {REPORT_NAME}; is this the output folder of "
                           "'dicomrecon convert'?")
    report = _load(report_path)
    qc = ConversionQC(outdir, report.get("input", ""), int(report.get("files_read", 0)))
    for out in report.get("outputs", []):
        side_path = os.path.join(outdir, out["sidecar"])
        qc.volumes.append(read_sidecar(side_path))
    for r in report.get("refused", []):
        qc.refused.append(RefusedInfo(str(r.get("group")), r.get("series_instance_uid") or "",
                                      [_finding(f) for f in r.get("reasons", [])]))
    qc.skipped = [SkippedInfo(s["file"], s["reason"]) for s in report.get("skipped_files", [])]
    _link_siblings(qc.volumes)
    return qc


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as JSON ({exc})") from None


def _finding(d: dict) -> FindingText:
    return FindingText(d.get("code", ""), d.get("severity", ""), d.get("message", ""))


def read_sidecar(path: str) -> VolumeInfo:
    """One sidecar (plain or --bids) as a :class:`VolumeInfo`, read through the typed
    :class:`~dicomrecon.provenance.Provenance`."""
    from ..provenance import read_provenance
    prov = read_provenance(path)
    vol, src = prov.volume, prov.source
    shape = tuple(vol.shape_xyz or vol.shape_xyzt)
    first = prov.volumes[0] if prov.volumes else prov  # --4d: each volume's own slices
    group = src.group
    label = (group if isinstance(group, str) else "+".join(group)) + \
        (f"p{src.part}" if src.part else "")
    return VolumeInfo(
        label=label, group=group if isinstance(group, str) else group[0],
        sidecar=path, path=os.path.join(os.path.dirname(path), vol.file), fmt=vol.format,
        shape=shape, components=int(vol.components), affine=vol.affine,
        reconstruction=prov.reconstruction, part=src.part,
        series=SeriesInfo(src.series_instance_uid or "", src.series_number,
                          src.series_description or "", src.modality or "",
                          src.manufacturer or ""),
        split_keys=_plain(src.split_keys), policy=dict(prov.policy or {}),
        findings=[FindingText(f.code or "", f.severity or "", f.message or "")
                  for f in prov.findings],
        processing=list(prov.processing), sources=_sources(src.input, first),
        positions=_positions(label, prov.geometry, first, prov.resample),
        resample=_resample(first.resample or prov.resample, first),
        fourth_axis=None if prov.fourth_axis is None else _key_text(prov.fourth_axis.key),
        n_fourth=shape[3] if len(shape) == 4 else 1,
        fourth_values=() if prov.fourth_axis is None else
        tuple(_value_text(v) for v in prov.fourth_axis.values))


def _plain(v):
    """A frozen JSON value (tuples, mapping proxies) as plain lists and dicts."""
    from ..provenance import dump
    return dump(v)


def _value_text(v) -> str:
    """A 4th-axis value (a number, text or a mapping of several keys) in a few characters."""
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_value_text(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:g}"
    return str(list(v) if isinstance(v, tuple) else v)


def _key_text(key) -> str:
    return str(list(key) if isinstance(key, tuple) else key)


def _source_list(rec) -> tuple:
    """Source slices ascending along the normal: ``source_slices`` of a resampled volume,
    ``slices`` of a stacked one."""
    return rec.source_slices or rec.slices or ()


def _sources(root: str, rec) -> list:
    base = root if os.path.isdir(root) else os.path.dirname(root)
    return [SourceSlice(os.path.join(base, s.file), s.sop_instance_uid or "",
                        int(s.frame or s.tile or 1) - 1)
            for s in _source_list(rec) if getattr(s, "file", None)]


def _positions(label: str, geom, rec, resample):
    if geom is None or geom.slice_normal is None:
        return None
    ipps = np.array([s.image_position_patient for s in _source_list(rec)], float)
    tilt = resample.tilt_deg_from_positions if resample is not None else None
    return StackPositions(
        label=label, ipps=ipps.reshape(-1, 3),
        positions=np.asarray(geom.slice_positions_mm, float),
        row=np.asarray(geom.row_cosine, float), col=np.asarray(geom.column_cosine, float),
        normal=np.asarray(geom.slice_normal, float),
        nominal=_float(geom.spacing.nominal),
        tilt_deg=_float(geom.tilt_deg_from_positions if tilt is None else tilt))


def _float(v) -> float:
    return float("nan") if v is None else float(v)


def _resample(info, rec) -> Optional[ResampleInfo]:
    if info is None:
        return None
    return ResampleInfo(
        fill_value=float(info.fill.value), fill_voxels=int(info.fill.voxels),
        fill_fraction=float(info.fill.fraction),
        z_positions=np.array([s.position_mm for s in rec.slices or ()], float),
        src_offsets=np.asarray(info.source_slice_offsets_px or [], float).reshape(-1, 2),
        interpolation=info.interpolation, spacing_mm=float(info.spacing_after_mm or 0.0))


def _link_siblings(volumes: list) -> None:
    """Give every part of a split group the positions of its other parts."""
    by_group: dict = {}
    for v in volumes:
        if v.part is not None and v.positions is not None:
            by_group.setdefault(v.group, []).append(v)
    for parts in by_group.values():
        for v in parts:
            v.positions.siblings = [(o.label, o.positions.positions) for o in parts if o is not v]


# --------------------------------------------------------------------------------------------
def positions_from_plan(vp) -> Optional[StackPositions]:
    """What the sidecar of plan ``vp`` will record as its :class:`StackPositions` (its
    geometry; the tilt as :func:`_positions` reads it), known before any pixel is decoded:
    ``convert --qc`` draws the plot while the volume is written.  None for a part of a split
    group (its plot shows the other parts, known only once all are written)."""
    geom = vp.geometry
    if vp.part is not None or geom is None or geom.orientation is None or not len(geom.positions):
        return None
    tilt = geom.tilt_deg
    if vp.kind == "resample":
        whole = vp.group.geometry
        tilt = whole.tilt_deg if whole.is_tilted else 0.0
    return _stack_positions(vp.label, geom, tilt)


def same_positions(a: StackPositions, b: StackPositions) -> bool:
    """Whether two :class:`StackPositions` hold the same numbers (a plot of one is a plot of
    the other)."""
    arrays = [(a.ipps, b.ipps), (a.positions, b.positions), (a.row, b.row), (a.col, b.col),
              (a.normal, b.normal)]
    same = all(np.shape(x) == np.shape(y) and np.allclose(x, y, rtol=0, atol=1e-9)
               for x, y in arrays)
    scalars = [(a.nominal, b.nominal), (a.tilt_deg, b.tilt_deg), (a.spacing_rel, b.spacing_rel),
               (a.duplicate_mm, b.duplicate_mm)]
    return (same and a.label == b.label and not a.siblings and not b.siblings
            and all(np.isclose(x, y, rtol=0, atol=1e-9, equal_nan=True) for x, y in scalars))


def positions_from_geometry(label: str, geom: StackGeometry, siblings=()) -> StackPositions:
    """The same :class:`StackPositions` from a scan's geometry (no sidecar)."""
    return _stack_positions(label, geom, geom.tilt_deg if geom.is_tilted else 0.0, siblings)


def _stack_positions(label: str, geom: StackGeometry, tilt, siblings=()) -> StackPositions:
    o = geom.orientation
    return StackPositions(label=label, ipps=np.asarray(geom.ipp_sorted, float),
                          positions=np.asarray(geom.positions, float), row=o.row, col=o.col,
                          normal=o.normal, nominal=_float(geom.spacing.nominal),
                          tilt_deg=_float(tilt), siblings=list(siblings))
