"""The provenance of a written volume: one typed, frozen model that the sidecar serialises.

``NAME.json`` beside every volume is :meth:`Provenance.to_json` of this model, and
:meth:`Provenance.from_json` reads it back into the same objects, so no module parses sidecar
keys by hand.  Field names are the JSON keys; the layout is documented in README ("Sidecar
fields").  ``schema_version`` says which layout a file has; a file without it is version 1
(dicomrecon 0.1), whose layout is the same.

The model is plain data (numbers, strings, tuples and nested records) with no reference to
plans, headers or arrays, so it can be written, read back, compared and sent anywhere.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import InputError
from .geometry import Finding

#: The sidecar layout this code writes.
SCHEMA_VERSION = 1

_OMIT = {"omit": True}
_MAPPINGS = (Mapping, dict, collections.abc.Mapping)  # field metadata: left out of the JSON when None


def omit_none(**kw):
    """A field that is absent from the JSON (rather than null) when it is None."""
    return field(default=None, metadata=_OMIT, **kw)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeRecord:
    """The written file and its grid: index (x = column, y = row, z = slice) -> LPS mm."""

    file: str
    format: str
    shape_xyz: Optional[Tuple[int, ...]] = omit_none()
    dtype: str = ""
    components: int = 1
    affine_lps: Tuple[Tuple[float, ...], ...] = ()
    affine_ras: Tuple[Tuple[float, ...], ...] = ()
    origin_lps: Tuple[float, ...] = ()
    spacing: Tuple[float, ...] = ()
    direction_lps: Tuple[Tuple[float, ...], ...] = ()
    axes: str = ""
    shape_xyzt: Optional[Tuple[int, ...]] = omit_none()

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) index (x, y, z) -> LPS affine."""
        return np.asarray(self.affine_lps, dtype=float)


@dataclass(frozen=True)
class SourceRecord:
    """The DICOM series (and group of it) the volume was made from."""

    input: str
    series_instance_uid: Optional[str] = None
    series_number: Optional[int] = None
    series_description: Optional[str] = None
    modality: Optional[str] = None
    manufacturer: Optional[str] = None
    study_instance_uid: Optional[str] = None
    frame_of_reference_uid: Optional[str] = None
    group: Union[str, Tuple[str, ...], None] = None     # a tuple for a 4D volume
    split_keys: Union[Mapping[str, Any], Tuple[Mapping[str, Any], ...], None] = None
    part: Optional[int] = None
    pacs: Optional[Mapping[str, Any]] = omit_none()    # a remote source: URL, UIDs (no secrets)


@dataclass(frozen=True)
class Contribution:
    """One source image's weight in a resampled output slice."""

    sop_instance_uid: str
    weight: float = 1.0


@dataclass(frozen=True)
class SourceSlice:
    """A source image: output slice ``z`` of a stacked volume, or one of ``source_slices``."""

    sop_instance_uid: str
    file: str                                   # relative to source.input
    instance_number: Optional[int]
    image_position_patient: Optional[Tuple[float, ...]]
    z: Optional[int] = omit_none()
    frame: Optional[int] = omit_none()          # 1-based frame of a multi-frame file
    tile: Optional[int] = omit_none()           # 1-based tile of a Siemens MOSAIC


@dataclass(frozen=True)
class OutputSlice:
    """Output slice ``z`` of a resampled volume: its position along the normal and the source
    images it was interpolated from."""

    z: int
    position_mm: float
    sources: Tuple[Contribution, ...]


SliceRecord = Union[SourceSlice, OutputSlice]


@dataclass(frozen=True)
class SpacingRecord:
    min: Optional[float] = None
    median: Optional[float] = None
    max: Optional[float] = None


@dataclass(frozen=True)
class GridRecord:
    shape_xyz: Tuple[int, ...]
    affine_lps: Tuple[Tuple[float, ...], ...]
    slice_spacing: float
    spacing_rule: Union[str, float]


@dataclass(frozen=True)
class FillRecord:
    value: float
    source: str
    voxels: int
    fraction: float


@dataclass(frozen=True)
class ResampleRecord:
    """What the resampler did: the tilt, spacings before and after, grid and fill."""

    interpolation: str
    tilt_deg_from_positions: float
    tilt_deg_from_tag: Optional[float]
    spacing_before_mm: SpacingRecord
    spacing_after_mm: float
    grid: GridRecord
    fill: FillRecord
    source_slice_offsets_px: Tuple[Tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class SpacingStatsRecord:
    nominal: Optional[float]
    minimum: Optional[float]
    maximum: Optional[float]
    regular: bool
    n_duplicates: int
    missing: int
    gaps: Tuple[Tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class GeometryRecord:
    """The geometry report of the slices (geometry.StackGeometry.to_dict())."""

    n_slices: int
    row_cosine: Optional[Tuple[float, ...]]
    column_cosine: Optional[Tuple[float, ...]]
    slice_normal: Optional[Tuple[float, ...]]
    pixel_spacing: Tuple[float, ...]
    slice_positions_mm: Tuple[float, ...]
    spacing: SpacingStatsRecord
    tilt_deg_from_positions: float
    tilt_deg_from_tag: Optional[float]
    obliquity_deg: float
    findings: Tuple[Finding, ...] = ()


@dataclass(frozen=True)
class ValuesRecord:
    """How stored values became output values."""

    rescale: str                     # "none", "uniform" or "per-slice"
    slope: Optional[float] = None
    intercept: Optional[float] = None
    stored_dtype: str = ""
    output_dtype: str = ""
    photometric_interpretation: Optional[str] = None
    units: Optional[str] = None


@dataclass(frozen=True)
class FourthAxis:
    key: Union[str, Tuple[str, ...]]
    values: Tuple[Any, ...]
    note: str = ""
    repetition_time_s: Optional[float] = omit_none()   # when the 4th axis is time (pixdim[4])


@dataclass(frozen=True)
class DiffusionRecord:
    """The diffusion encoding of one volume (vendor.Diffusion): b-value, gradient direction in
    patient (LPS) space, the raw vendor values and where they were read."""

    b_value: Optional[float]
    direction_lps: Optional[Tuple[float, ...]]
    raw: Optional[Tuple[float, ...]]
    frame: Optional[str]                 # "patient" or "image": how ``raw`` is expressed
    source: Optional[str]
    trace: bool = False
    note: Optional[str] = omit_none()


@dataclass(frozen=True)
class DiffusionTable:
    """The .bval/.bvec written beside a 4D diffusion volume (dicomrecon.bids.diffusion), with
    every volume's own record; ``bvec`` is None (and ``note`` says why) when a direction is
    unknown."""

    bval: Optional[str]
    bvec: Optional[str]
    convention: Optional[str] = omit_none()
    b_values: Optional[Tuple[float, ...]] = omit_none()
    directions_lps: Optional[Tuple[Optional[Tuple[float, ...]], ...]] = omit_none()
    sources: Optional[Tuple[str, ...]] = omit_none()
    volumes: Optional[Tuple[DiffusionRecord, ...]] = omit_none()
    note: Optional[str] = omit_none()


@dataclass(frozen=True)
class VolumeEntry:
    """One 3D volume of a 4D file: its group, values and slices."""

    t: int
    group: str
    split_keys: Mapping[str, Any]
    values: ValuesRecord
    slices: Tuple[SliceRecord, ...]
    source_slices: Optional[Tuple[SourceSlice, ...]] = omit_none()
    resample: Optional[ResampleRecord] = omit_none()


@dataclass(frozen=True)
class Provenance:
    """Everything dicomrecon knows of one written volume; ``NAME.json`` is its JSON."""

    dicomrecon_version: str
    created: str
    volume: VolumeRecord
    source: SourceRecord
    reconstruction: str              # "stack", "sheared", "resample" or "placeholder"
    policy: Mapping[str, Any]        # plan.Policy.to_dict()
    slices: Optional[Tuple[SliceRecord, ...]] = omit_none()
    source_slices: Optional[Tuple[SourceSlice, ...]] = omit_none()
    resample: Optional[ResampleRecord] = omit_none()
    geometry: Optional[GeometryRecord] = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    values: Optional[ValuesRecord] = None
    processing: Tuple[str, ...] = ()
    findings: Tuple[Finding, ...] = ()
    fourth_axis: Optional[FourthAxis] = omit_none()
    volumes: Optional[Tuple[VolumeEntry, ...]] = omit_none()
    diffusion: Union[DiffusionTable, DiffusionRecord, None] = omit_none()
    operations: Optional[Tuple[str, ...]] = omit_none()  # Volume.crop/pad/flip/... since read
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        """The sidecar document (JSON-ready: dicts, lists, numbers, strings)."""
        return dump(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Provenance":
        """Read a sidecar document back (a missing ``schema_version`` is version 1).

        A BIDS sidecar (``convert --bids``: BIDS keys at the top level) is read from its
        ``"dicomrecon"`` record."""
        if "volume" not in doc and isinstance(doc.get("dicomrecon"), Mapping):
            doc = doc["dicomrecon"]
        version = doc.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"sidecar schema_version {version!r} is newer than this dicomrecon "
                             f"reads ({SCHEMA_VERSION}): upgrade dicomrecon")
        return load(cls, {**doc, "schema_version": SCHEMA_VERSION})

    @classmethod
    def from_file(cls, path) -> "Provenance":
        """Read a sidecar file (``NAME.json``, plain or BIDS); InputError naming the file if
        it is not one."""
        return read_provenance(path)

    @property
    def is_4d(self) -> bool:
        return self.volumes is not None

    @property
    def all_findings(self) -> Tuple[Finding, ...]:
        return self.findings


def read_provenance(path: str) -> Provenance:
    """The typed provenance in a conversion's sidecar; InputError naming the file if it is not
    one."""
    try:
        with open(path, encoding="utf-8") as f:
            side = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the sidecar ({exc})")
    if isinstance(side, dict) and "volume" not in side and isinstance(side.get("dicomrecon"), dict):
        side = side["dicomrecon"]  # a --bids sidecar
    if not (isinstance(side, dict) and "source" in side and "volume" in side):
        raise InputError(f"{path}: not a dicomrecon sidecar (no 'source' and 'volume' fields)",
                         hint="--like takes a DICOM folder or the NAME.json of a conversion")
    try:
        return Provenance.from_json(side)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a dicomrecon sidecar this version reads ({exc})")


# --------------------------------------------------------------------------------------------
# Generic dataclass <-> JSON, driven by the type hints above
# --------------------------------------------------------------------------------------------
def dump(obj) -> Any:
    """A record (or value) as JSON-ready data; fields marked omit_none vanish when None."""
    kind = type(obj)
    if kind in _PLAIN:  # most values: a 1000-slice sidecar has ~10,000 of them
        return obj
    if kind is tuple or kind is list:
        return [dump(v) for v in obj]
    if isinstance(obj, Finding):
        return obj.to_dict()
    fields = _dump_fields(kind) if dataclasses.is_dataclass(obj) else None
    if fields is not None:
        out = {}
        for name, omit in fields:
            v = getattr(obj, name)
            if v is None and omit:
                continue
            out[name] = dump(v)
        return out
    if isinstance(obj, collections.abc.Mapping):
        return {k: dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


_PLAIN = frozenset((str, int, float, bool, type(None)))


@functools.lru_cache(maxsize=None)
def _dump_fields(tp) -> tuple:
    """(name, omitted when None) of each field of record class ``tp``, looked up once."""
    return tuple((f.name, bool(f.metadata.get("omit"))) for f in dataclasses.fields(tp))


def load(tp, data) -> Any:
    """``data`` (parsed JSON) as type ``tp``; raises ValueError naming the field on a
    mismatch."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _load_union(typing.get_args(tp), data)
    if tp is Finding:
        return Finding(**{k: data.get(k) for k in ("code", "severity", "message", "tag",
                                                   "value", "tolerance")})
    if dataclasses.is_dataclass(tp):
        return _load_record(tp, data)
    if origin in (tuple, Tuple):
        args = typing.get_args(tp)
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"expected a list, got {data!r}")
        return tuple(load(args[0], v) for v in data)
    if tp is Any or origin in _MAPPINGS or tp in (str, int, float, bool):
        return _freeze(data) if tp is Any or origin in _MAPPINGS else data
    return data


def _load_union(args, data):
    kinds = [a for a in args if a is not type(None)]
    for a in kinds:  # the member whose JSON shape fits: list -> tuple, dict -> mapping/record
        o = typing.get_origin(a)
        if isinstance(data, list) and o in (tuple, Tuple):
            return load(a, data)
        if isinstance(data, dict) and (o in _MAPPINGS or dataclasses.is_dataclass(a)
                                       and _fits(a, data)):
            return load(a, data)
        if not isinstance(data, (list, dict)) and o is None and not dataclasses.is_dataclass(a):
            return data
    raise ValueError(f"{data!r} fits none of {kinds}")


def _fits(tp, data: Mapping) -> bool:
    """Whether a JSON object has exactly the shape of record ``tp`` (to pick a Union member)."""
    names = {f.name for f in dataclasses.fields(tp)}
    required = {f.name for f in dataclasses.fields(tp)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return required <= set(data) <= names


@functools.lru_cache(maxsize=None)
def _type_hints(tp) -> dict:
    """``typing.get_type_hints`` of a record class, resolved once: a 300-slice sidecar has
    600 slice records, and resolving the string annotations of each was most of its load time."""
    return typing.get_type_hints(tp)


def _load_record(tp, data):
    if not isinstance(data, Mapping):
        raise ValueError(f"{tp.__name__}: expected an object, got {data!r}")
    hints = _type_hints(tp)
    kw = {}
    for f in dataclasses.fields(tp):
        if f.name in data:
            try:
                kw[f.name] = load(hints[f.name], data[f.name])
            except ValueError as exc:
                raise ValueError(f"{tp.__name__}.{f.name}: {exc}") from None
    try:
        return tp(**kw)
    except TypeError as exc:
        raise ValueError(f"{tp.__name__}: {exc}") from None


def frozen(v):
    """Any JSON-able value (dicts, lists, numpy scalars) as the read-only form from_json gives:
    tuples and mapping proxies, so a built record equals the one read back."""
    return _freeze(dump(v))


def _freeze(v):
    """JSON data kept as it is, with lists as tuples so that a record stays hashable-ish and
    cannot be changed through a shared list."""
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return types.MappingProxyType({k: _freeze(x) for k, x in v.items()})
    return v


__all__ = ["Provenance", "VolumeRecord", "SourceRecord", "SourceSlice", "OutputSlice", "Contribution",
           "ResampleRecord", "GeometryRecord", "ValuesRecord", "FourthAxis", "VolumeEntry",
           "DiffusionRecord", "DiffusionTable", "SpacingRecord", "GridRecord", "FillRecord",
           "SpacingStatsRecord",
           "SCHEMA_VERSION", "dump", "load", "read_provenance"]
