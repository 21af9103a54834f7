"""Read the header tags dicomrecon needs from one file, without decoding pixels.

:func:`read_headers` returns one :class:`SliceHeader` (plain Python values) per image of a
file (one per frame of an enhanced multi-frame file, one per tile of a Siemens MOSAIC) or raises
:class:`SkipFile` with a reason naming the file, the tag and the value.  It also records where
the pixel bytes start, so that uncompressed pixel data can later be read straight into the
output array.  GDCM's scanner reads the tags in :data:`TAG_TABLE` of every file
(:mod:`dicomrecon.engine.gdcm_headers`); pydicom parses, once, the files that need nested data
(enhanced functional groups, the Siemens CSA header) or that GDCM cannot read (so that the reason
is named).  Vendor data gets its own small types (:class:`MosaicTile`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Optional

from collections.abc import Sequence

#: Uncompressed transfer syntaxes whose pixel bytes we read directly.
NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "<",     # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": "<",   # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": ">",   # Explicit VR Big Endian (retired)
}

PIXEL_DATA_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data",
                   0x7FE00009: "Double Float Pixel Data"}

#: Tags read from each header: keyword -> (tag, VR, name), as in the DICOM data dictionary
#: (a literal table so that the command line need not import pydicom to read a header; a test
#: checks it against pydicom's dictionary).  Everything else is skipped unparsed.
TAG_TABLE = {
    "SpecificCharacterSet": (0x00080005, "CS", "Specific Character Set"),
    "SOPClassUID": (0x00080016, "UI", "SOP Class UID"),
    "SOPInstanceUID": (0x00080018, "UI", "SOP Instance UID"),
    "StudyInstanceUID": (0x0020000D, "UI", "Study Instance UID"),
    "SeriesInstanceUID": (0x0020000E, "UI", "Series Instance UID"),
    "FrameOfReferenceUID": (0x00200052, "UI", "Frame of Reference UID"),
    "Modality": (0x00080060, "CS", "Modality"),
    "Manufacturer": (0x00080070, "LO", "Manufacturer"),
    "SeriesNumber": (0x00200011, "IS", "Series Number"),
    "SeriesDescription": (0x0008103E, "LO", "Series Description"),
    "InstanceNumber": (0x00200013, "IS", "Instance Number"),
    "AcquisitionNumber": (0x00200012, "IS", "Acquisition Number"),
    "ImageType": (0x00080008, "CS", "Image Type"),
    "ImagePositionPatient": (0x00200032, "DS", "Image Position (Patient)"),
    "ImageOrientationPatient": (0x00200037, "DS", "Image Orientation (Patient)"),
    "PixelSpacing": (0x00280030, "DS", "Pixel Spacing"),
    "SliceThickness": (0x00180050, "DS", "Slice Thickness"),
    "SpacingBetweenSlices": (0x00180088, "DS", "Spacing Between Slices"),
    "GantryDetectorTilt": (0x00181120, "DS", "Gantry/Detector Tilt"),
    "Rows": (0x00280010, "US", "Rows"),
    "Columns": (0x00280011, "US", "Columns"),
    "NumberOfFrames": (0x00280008, "IS", "Number of Frames"),
    "SamplesPerPixel": (0x00280002, "US", "Samples per Pixel"),
    "PhotometricInterpretation": (0x00280004, "CS", "Photometric Interpretation"),
    "PlanarConfiguration": (0x00280006, "US", "Planar Configuration"),
    "BitsAllocated": (0x00280100, "US", "Bits Allocated"),
    "BitsStored": (0x00280101, "US", "Bits Stored"),
    "HighBit": (0x00280102, "US", "High Bit"),
    "PixelRepresentation": (0x00280103, "US", "Pixel Representation"),
    "RescaleSlope": (0x00281053, "DS", "Rescale Slope"),
    "RescaleIntercept": (0x00281052, "DS", "Rescale Intercept"),
    "RescaleType": (0x00281054, "LO", "Rescale Type"),
    "PixelPaddingValue": (0x00280120, "US or SS", "Pixel Padding Value"),
    "EchoNumbers": (0x00180086, "IS", "Echo Number(s)"),
    "EchoTime": (0x00180081, "DS", "Echo Time"),
    "TemporalPositionIdentifier": (0x00200100, "IS", "Temporal Position Identifier"),
    "PatientID": (0x00100020, "LO", "Patient ID"),
    "PatientName": (0x00100010, "PN", "Patient's Name"),
    "StudyDate": (0x00080020, "DA", "Study Date"),
    "SeriesDate": (0x00080021, "DA", "Series Date"),
    "BodyPartExamined": (0x00180015, "CS", "Body Part Examined"),
    "ProtocolName": (0x00181030, "LO", "Protocol Name"),
    "ImageComments": (0x00204000, "LT", "Image Comments"),
    "TriggerTime": (0x00181060, "DS", "Trigger Time"),
    "DiffusionBValue": (0x00189087, "FD", "Diffusion b-value"),
    "DiffusionGradientOrientation": (0x00189089, "FD", "Diffusion Gradient Orientation"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ", "Per-Frame Functional Groups Sequence"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ", "Shared Functional Groups Sequence"),
}

_KEYWORD_OF = {tag: kw for kw, (tag, _, _) in TAG_TABLE.items()}
_VR_OF = {tag: vr for tag, vr, _ in TAG_TABLE.values()}

# --- vendor tags (diffusion encoding, phase direction): see dicomrecon/vendor/diffusion.py
from .vendor.diffusion import PRIVATE_TAGS as _VENDOR_TAGS  # noqa: E402

_KEYWORD_OF.update({tag: kw for kw, (tag, _, _) in _VENDOR_TAGS.items()})
_VR_OF.update({tag: vr for tag, vr, _ in _VENDOR_TAGS.values()})
_VENDOR_KEYS = tuple(_VENDOR_TAGS) + ("ImageComments",)
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d",
           "US or SS": "H"}
_NUMERIC_TEXT = {"DS": float, "IS": int}


def _fast_values(ds) -> dict:
    """Keyword -> Python value for the tags in :data:`TAG_TABLE` of a pydicom dataset,
    converted straight from the raw bytes (pydicom's per-keyword access costs ~1 ms a file;
    this is ~20 times cheaper)."""
    little = ds.original_encoding[1] is not False
    charset = getattr(ds._dict.get(0x00080005), "value", None) or b""
    utf8 = "192" in (charset.decode("latin-1") if isinstance(charset, bytes) else str(charset))
    out = {}
    for tag, elem in ds._dict.items():
        kw = _KEYWORD_OF.get(int(tag))
        if kw is not None:
            vr = getattr(elem, "VR", None)
            vr = vr if vr and vr != "UN" else _VR_OF[int(tag)]  # private tags may come as UN
            out[kw] = _convert(vr, elem.value, little, utf8)
    return out


def _convert(vr: str, raw, little: bool, utf8: bool):
    """One element's value from its raw bytes: text split on backslashes (a list when
    multi-valued), DS/IS as float/int, binary VRs unpacked; a sequence is only marked present."""
    if vr == "SQ":
        return True
    if not isinstance(raw, (bytes, bytearray)):  # already converted by pydicom
        return raw
    if not raw:
        return None
    fmt = _BINARY.get(vr)
    if fmt:
        size = struct.calcsize(fmt)
        n = len(raw) // size
        vals = struct.unpack(("<" if little else ">") + fmt * n, raw[:n * size])
        return vals[0] if n == 1 else list(vals)
    text = raw.decode("utf-8" if utf8 else "latin-1", "replace").rstrip("\x00 ")
    parts = [p.strip() for p in text.split("\\")] if vr not in ("LT", "ST", "UT") else [text]
    conv = _NUMERIC_TEXT.get(vr)
    if conv:
        try:
            parts = [conv(float(p)) if conv is int else conv(p) for p in parts if p != ""]
        except ValueError:
            return text  # reported as invalid by the reader that uses it
        return parts[0] if len(parts) == 1 else (parts or None)
    return parts[0] if len(parts) == 1 else parts


class SkipFile(Exception):
    """A file that is not a usable DICOM image; the message says why.

    ``damaged`` is set for a DICOM image lost to damage (truncated, pixel data of the wrong
    length, unreadable header): ``{"series_uid", "ipp", "iop"}`` as far as they could be read
    (None when not), so that discovery can tell which volume lost a slice."""

    def __init__(self, message: str, damaged: Optional[dict] = None):
        super().__init__(message)
        self.damaged = damaged


@dataclass(frozen=True)
class MosaicTile:
    """Where a tile sits in a Siemens MOSAIC image: the whole mosaic's size, the tile's grid
    row and column (the tile's own size is the header's rows x columns)."""

    mosaic_rows: int
    mosaic_columns: int
    row: int
    column: int


@dataclass(frozen=True)
class SeriesText:
    """Descriptive text tags carried into sidecars and output names."""

    protocol_name: str = ""
    study_date: str = ""
    series_date: str = ""
    body_part: str = ""


@dataclass
class SliceHeader:
    path: str
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    manufacturer: str
    series_number: Optional[int]
    series_description: str
    instance_number: Optional[int]
    acquisition_number: Optional[int]
    image_type: tuple
    ipp: Optional[tuple]
    iop: Optional[tuple]
    pixel_spacing: Optional[tuple]
    slice_thickness: Optional[float]
    gantry_tilt: Optional[float]
    rows: int
    columns: int
    number_of_frames: int
    samples_per_pixel: int
    photometric: str
    planar_configuration: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    rescale_slope: float
    rescale_intercept: float
    rescale_type: str
    has_rescale: bool
    pixel_padding_value: Optional[int]
    echo_numbers: Optional[str]
    echo_time: Optional[float]
    temporal_position: Optional[int]
    transfer_syntax: str
    pixel_offset: Optional[int]   # start of native pixel bytes, None when encapsulated
    patient_id: str = ""
    patient_name: str = ""
    trigger_time: Optional[float] = None
    diffusion_bvalue: Optional[float] = None
    diffusion_direction: Optional[tuple] = None
    frame: int = 0                 # frame (or mosaic tile) index within the file (0-based)
    text: SeriesText = SeriesText()
    pixel_tag: int = 0x7FE00010    # (7FE0,0010), or (7FE0,0008)/(7FE0,0009) float pixel data
    stack_id: str = ""             # enhanced FrameContentSequence StackID
    tile: Optional[MosaicTile] = None      # set on each tile of a demosaiced Siemens MOSAIC
    mosaic_problem: str = ""       # why a MOSAIC image could not be demosaiced
    unexpanded_frames: bool = False  # multi-frame without functional groups (refused)
    #: rescale pairs of all frames of an enhanced file, frame 1's first (decoders that apply
    #: one pair to a whole file, as ITK does, use frame 1's: see engine/itk_decode.py)
    file_rescale: tuple = ()
    #: vendor data only (dicomrecon.vendor): "diffusion", "diffusion_trace", "RepetitionTime",
    #: "DiffusionDirectionality", "uih_vframe", and "pixel_problem" (why the transfer syntax
    #: cannot be decoded); everything else has a typed field above
    extra: dict = field(default_factory=dict)

    @property
    def multiframe_uid(self) -> Optional[str]:
        """SOPInstanceUID of a multi-frame file or a mosaic (its frames or tiles, and those of
        another file at the same positions, are different acquisitions); None otherwise."""
        return self.sop_instance_uid if (self.number_of_frames > 1 or self.tile is not None) \
            else None

    @property
    def instance_key(self) -> tuple:
        """What identifies this image: (SOPInstanceUID, frame)."""
        return (self.sop_instance_uid, self.frame)

    @property
    def byte_order(self) -> Optional[str]:
        return NATIVE_SYNTAXES.get(self.transfer_syntax)

    @property
    def is_native(self) -> bool:
        return self.pixel_offset is not None

    @property
    def is_float(self) -> bool:
        """Float (7FE0,0008) or Double Float (7FE0,0009) Pixel Data: values as stored."""
        return self.pixel_tag != 0x7FE00010

    @property
    def frame_nbytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def _image_type(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(v.split("\\"))
    return tuple(str(x) for x in v)


def _num(ds, kw, cast=float):
    v = ds.get(kw)
    if v is None or v == "":
        return None
    try:
        if isinstance(v, Sequence) and not isinstance(v, (str, bytes)):
            v = v[0]
        return cast(float(v)) if cast is int and isinstance(v, str) else cast(v)
    except (TypeError, ValueError):
        return None


def _vec(ds, kw, n, path):
    v = ds.get(kw)
    if v is None or v == "":
        return None
    try:
        vals = tuple(float(x) for x in (v if isinstance(v, Sequence) and not isinstance(v, (str, bytes)) else [v]))
    except (TypeError, ValueError):
        raise SkipFile(f"{path}: a {_tagname(kw)} value of '{v}' is invalid, it must be {n} numbers")
    if len(vals) != n:
        raise SkipFile(f"{path}: a {_tagname(kw)} value of '{v}' is invalid, it must be {n} numbers")
    return vals


def _padding(value, signed: int, bits: int):
    """PixelPaddingValue as the stored integer (US read of a signed value is re-signed)."""
    if not isinstance(value, int):
        return None
    if signed and bits in (8, 16, 32) and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _tagname(kw):
    tag, _, name = TAG_TABLE[kw]
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{name}'"


def _str(ds, kw):
    v = ds.get(kw)
    if v is None:
        return ""
    return str(v).strip()


def _locate_pixels(fp, implicit: bool, little: bool):
    """At the position pydicom stopped: return (tag, value offset, length) or None."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    tag = (group << 16) | elem
    if implicit:
        (length,) = struct.unpack(e + "L", head[4:8])
        return tag, start + 8, length
    vr = head[4:6]
    if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        if len(head) < 12:
            return tag, start + 12, -1
        (length,) = struct.unpack(e + "L", head[8:12])
        return tag, start + 12, length
    (length,) = struct.unpack(e + "H", head[6:8])
    return tag, start + 8, length


DEFLATED = "1.2.840.10008.1.2.1.99"
#: Tags the GDCM scanner reads (sequences are read with pydicom, only where needed)
#: (GDCM's scanner does not return private tags asked for by number: the public vendor tags are
#: scanned, files that may carry private diffusion tags are read with pydicom, see
#: :func:`_needs_dataset`)
SCAN_TABLE = {**{kw: v for kw, v in TAG_TABLE.items() if v[1] != "SQ"},
              **{kw: v for kw, v in _VENDOR_TAGS.items() if not (v[0] >> 16) & 1}}
#: Manufacturers whose MR images may carry diffusion encoding in private tags
_PRIVATE_DIFFUSION_VENDORS = ("Siemens", "GE", "Philips", "UIH")
_EXACT_WITH_PYDICOM = [kw for kw, v in SCAN_TABLE.items() if v[1] in ("FD", "FL")]


def read_headers(path: str) -> list:
    """One :class:`SliceHeader` per image in a file: one, or one per frame of an enhanced
    multi-frame file (geometry and values from its functional groups), or one per tile of a
    Siemens MOSAIC.  Raises :class:`SkipFile` with a reason."""
    result = read_many([path])[path]
    if isinstance(result, SkipFile):
        raise result
    return result


def read_many(paths: list, progress=None) -> dict:
    """``{path: [SliceHeader, ...] or SkipFile}`` for every file, each file read once.

    GDCM's scanner reads the tags of every file in one C++ pass (see
    :mod:`dicomrecon.engine.gdcm_headers`).  The files it cannot read, and the few that need
    nested data (multi-frame functional groups, the MOSAIC CSA header) or exact FD values, are
    parsed once with pydicom instead, which also names what is wrong with a damaged file.
    Scanned files that share their pixel format and image kind share one :class:`_Shared`
    (see :func:`_from_template`): only the values that differ are converted per file.
    """
    from .engine.gdcm_headers import file_sizes, scan_values
    scanned = scan_values(paths, SCAN_TABLE)
    sizes = file_sizes(paths)
    shared: dict = {}
    out = {}
    for i, p in enumerate(paths):
        try:
            out[p] = _headers_of(p, scanned.get(p), sizes[p], shared)
        except SkipFile as exc:
            out[p] = exc
        if progress:
            progress(i + 1, len(paths))
    return out


def _needs_dataset(values: dict) -> bool:
    """Nested data, exact binary floats or private vendor tags: the scanner's text is not
    enough."""
    from .vendor.diffusion import _vendor
    frames = values.get("NumberOfFrames")
    image_type = values.get("ImageType") or ()
    private = values.get("Modality") == "MR" and \
        _vendor(str(values.get("Manufacturer") or "")) in _PRIVATE_DIFFUSION_VENDORS
    return (private or (isinstance(frames, int) and frames > 1) or not values.get("TransferSyntaxUID")
            or any(str(t).upper() in ("MOSAIC", "VFRAME") for t in _image_type(image_type))
            or any(kw in values for kw in _EXACT_WITH_PYDICOM))


def _headers_of(path: str, scanned: Optional[dict], size: Optional[int],
                shared: Optional[dict] = None) -> list:
    if size is None:
        raise SkipFile(f"{path}: cannot be read ({'no such file' if not os.path.exists(path) else 'permission denied'})")
    values = None
    if scanned is not None:
        ts = (scanned.get("TransferSyntaxUID") or "").rstrip("\x00 ")
        kind = _shared_of(scanned, ts, {} if shared is None else shared)
        if not kind.needs_dataset:
            where = _scanned_pixels(path, kind.values, ts, size)
            if where is not None:
                return [_label_scanned(_from_template(kind, path, scanned, ts, where, size),
                                       scanned, kind)]
        values = kind.values if kind.texts is scanned else _values_of(scanned)
    try:
        return _headers_with_pydicom(path, size, deflated=scanned is not None and
                                     (scanned.get("TransferSyntaxUID") or "").startswith(DEFLATED))
    except SkipFile as skip:  # what GDCM could read says which volume lost the image
        if values and skip.damaged is None and "unreadable" in str(skip):
            skip.damaged = _damage_info(values, path)
        raise


def _values_of(scanned: dict) -> dict:
    """Keyword -> Python value of one file's scanned text (the transfer syntax left out)."""
    from .engine.gdcm_headers import values_from_scan
    values = values_from_scan(scanned, SCAN_TABLE)
    values.pop("TransferSyntaxUID", None)
    return values


@dataclass
class _Shared:
    """What the scanned files with one :data:`_SHARED_KEYS` signature have in common: their
    first file's texts and values, whether pydicom must read them (:func:`_needs_dataset`), and
    the header of a file of theirs (``template``, before vendor labels) once one is built.
    ``varying`` lists the :data:`_FIELD_OF` keywords whose text has differed from the
    template's so far (compared one by one); the others are compared all at once."""

    texts: dict
    values: dict
    needs_dataset: bool
    template: Optional[SliceHeader] = None
    varying: tuple = ()
    stable: tuple = ()
    utf8: bool = False
    labels: Optional[tuple] = None
    vendor_texts: tuple = ()

    def __post_init__(self):
        self.utf8 = "192" in (self.texts.get("SpecificCharacterSet") or "")
        self.stable = tuple(_FIELD_OF)
        self.vendor_texts = tuple(map(self.texts.get, _VENDOR_KEYS))


def _shared_of(scanned: dict, ts: str, shared: dict) -> _Shared:
    key = (ts,) + tuple(map(scanned.get, _SHARED_KEYS))
    kind = shared.get(key)
    if kind is None:
        values = _values_of(scanned)
        needs = not ts or _needs_dataset({**values, "TransferSyntaxUID": ts})
        kind = shared[key] = _Shared(scanned, values, needs)
    return kind


def _from_template(kind: _Shared, path: str, scanned: dict, ts: str, where,
                   size: int) -> SliceHeader:
    """The header of a scanned file: a copy of the template of its :class:`_Shared`, with the
    fields of the keywords whose text differs converted as :func:`header_from_values` does
    (which builds the template, and any header whose values do not convert)."""
    t = kind.template
    if t is None or where[0] != t.pixel_tag:
        h = header_from_values(path, _values_of(scanned), ts, where, size)
        if t is None:
            kind.template = _copy_header(h)
        return h
    from .engine.gdcm_headers import convert
    texts, get = kind.texts, scanned.get
    if tuple(map(get, kind.stable)) != tuple(map(texts.get, kind.stable)):
        moved = tuple(kw for kw in kind.stable if get(kw) != texts.get(kw))
        kind.varying += moved
        kind.stable = tuple(kw for kw in kind.stable if kw not in moved)
    h = _copy_header(t)
    h.path = path
    if h.pixel_offset is not None:
        h.pixel_offset = where[1]
    for kw in kind.varying:
        text = get(kw)
        if text != texts.get(kw):
            field_name, how = _FIELD_OF[kw]
            try:  # the value as values_from_scan converts it (the charset is shared)
                value = how({kw: convert(text, SCAN_TABLE[kw][1], kind.utf8)}, kw, path)
            except SkipFile:  # named as header_from_values names it
                return header_from_values(path, _values_of(scanned), ts, where, size)
            setattr(h, field_name, value)
    return h


def _copy_header(h: SliceHeader) -> SliceHeader:
    """A copy of ``h`` (its own ``extra``; the other values are immutable or shared on purpose,
    as ``dataclasses.replace`` would share them), without calling ``__init__``."""
    c = object.__new__(SliceHeader)
    c.__dict__.update(h.__dict__)
    c.extra = dict(h.extra)
    return c


def _label_scanned(h: SliceHeader, scanned: dict, kind: _Shared) -> SliceHeader:
    """:func:`_label_vendor` of a scanned file's header.  Its result depends on the vendor
    keywords' values, the manufacturer and image type (all shared by the kind when the vendor
    texts are the kind's), the b-value and direction (unset: their FD tags send files to
    pydicom) and the IOP: when the IOP too is the kind's first labelled one, the labels are
    that header's (``kind.labels``)."""
    if tuple(map(scanned.get, _VENDOR_KEYS)) != kind.vendor_texts:
        return _label_vendor([h], _values_of({k: scanned[k] for k in _VENDOR_KEYS + (
            "SpecificCharacterSet",) if k in scanned}))[0]
    iop = repr(h.iop)  # (repr: -0.0 == 0.0, but a direction made with it differs)
    if kind.labels is not None and kind.labels[0] == iop:
        _, h.diffusion_bvalue, h.diffusion_direction, added = kind.labels
        h.extra.update(added)
        return h
    before = dict(h.extra)
    _label_vendor([h], kind.values)
    if kind.labels is None and h.diffusion_bvalue is None and h.diffusion_direction is None:
        added = {k: v for k, v in h.extra.items() if k not in before}
        if all(h.extra[k] is before[k] for k in before):
            kind.labels = (iop, None, None, added)
    return h


def _label_vendor(headers: list, values: dict) -> list:
    """Diffusion b-value/direction from standard or vendor tags (dicomrecon.vendor), and the
    file's RepetitionTime where a frame has none of its own."""
    from .vendor.diffusion import label_diffusion
    vendor = {k: values[k] for k in _VENDOR_KEYS if values.get(k) is not None}
    for h in headers:
        if vendor.get("RepetitionTime") is not None:
            h.extra.setdefault("RepetitionTime", vendor["RepetitionTime"])
        label_diffusion(h, {**vendor, "DiffusionBValue": h.diffusion_bvalue,
                            "DiffusionGradientOrientation": h.diffusion_direction,
                            "DiffusionDirectionality": h.extra.get("DiffusionDirectionality")
                            or vendor.get("DiffusionDirectionality")})
    return headers


def _scanned_pixels(path: str, values: dict, ts: str, size: int) -> Optional[tuple]:
    """Pixel data location of a scanned file, from the element header at the end of the file;
    None when it is not there (pixel data not last, truncated, absent): pydicom then reads."""
    from .engine.gdcm_headers import pixel_location
    if ts == DEFLATED:
        return None
    little, implicit = ts != "1.2.840.10008.1.2.2", ts == "1.2.840.10008.1.2"
    if ts not in NATIVE_SYNTAXES:
        return pixel_location(path, size, None, little, implicit)
    try:
        length = native_pixel_bytes(int(values["Rows"]), int(values["Columns"]),
                                    int(values.get("SamplesPerPixel") or 1),
                                    int(values.get("NumberOfFrames") or 1),
                                    int(values["BitsAllocated"]))
    except (KeyError, TypeError, ValueError):
        return None
    return pixel_location(path, size, length + (length & 1), little, implicit)  # even length


def _headers_with_pydicom(path: str, size: int, deflated: bool = False) -> list:
    """The whole header (stopping before the pixels) parsed once with pydicom: files the
    scanner could not read, and files with nested data, which are expanded from this one
    dataset (frames, mosaic tiles)."""
    try:
        fp = open(path, "rb")
    except OSError as exc:
        raise SkipFile(f"{path}: cannot be read ({exc.strerror})")
    with fp:
        ds, values, ts, where = _pydicom_header(fp, path, deflated)
        # pydicom stops quietly at the end of a file cut inside its header: no element follows,
        # or the next one runs past the end of the file
        cut = (where is None and _image_like(values)) or (
            where is not None and where[0] not in PIXEL_DATA_TAGS and where[1] is not None
            and where[2] != 0xFFFFFFFF and where[1] + where[2] > size)
    h = header_from_values(path, values, ts, where, size, cut=cut)
    return _label_vendor(_expand(h, ds), values)


def _image_like(values: dict) -> bool:
    """A header read to the end of its file that should have had pixel data: it has image
    attributes, or its SOP class is an image storage class (or cut short, unknown)."""
    from pydicom.uid import UID
    sop = UID(_str(values, "SOPClassUID"))
    return values.get("Rows") is not None or not sop.is_valid or "Image" in sop.name \
        or sop.name == str(sop)


def _expand(h: SliceHeader, ds) -> list:
    """The images of one file: frames, MOSAIC or UIH VFRAME tiles, or the file itself."""
    from .frames import expand_frames, expand_mosaic
    from .vendor.uih import expand_vframe, is_vframe
    has_groups = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if h.number_of_frames > 1 and has_groups:
        return expand_frames(h, ds)
    if h.number_of_frames == 1 and any(t.upper() == "MOSAIC" for t in h.image_type) \
            and h.ipp is not None and h.iop is not None and h.pixel_spacing is not None:
        return expand_mosaic(h, ds)
    if is_vframe(h):  # UIH virtual-frame mosaic, placed by its per-slice private sequence
        return expand_vframe(h, SliceHeader)
    if h.number_of_frames > 1:  # no functional groups: one header, refused by discovery
        h.unexpanded_frames = True
    return [h]


def _pydicom_header(fp, path: str, deflated: bool = False):
    """pydicom parses the header (any encoding, no preamble, deflate, nested data).  A
    deflated file is read whole (its pixel data can only be found in the inflated stream)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=not deflated)
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        implicit, little = ds.original_encoding
        values = _fast_values(ds)
    except InvalidDicomError:
        raise SkipFile(f"{path}: not a DICOM file (no 'DICM' prefix at byte 128 and no "
                       "File Meta Information)")
    except Exception as exc:  # pydicom raises many types on corrupt or truncated headers
        raise SkipFile(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc})")
    if not ts:
        raise SkipFile(f"{path}: a (0002,0010) 'Transfer Syntax UID' is missing")
    if implicit is None:  # pydicom could not tell (empty dataset)
        implicit, little = ts == "1.2.840.10008.1.2", ts != "1.2.840.10008.1.2.2"
    if ts == DEFLATED:  # pydicom read an inflated copy: look for the pixels in it
        where = _deflated_pixels(ds if deflated else pydicom.dcmread(path))
    else:
        where = _locate_pixels(fp, implicit, little)
    return ds, values, ts, where


def _deflated_pixels(ds) -> Optional[tuple]:
    """(tag, None, length) of the pixel data of a deflated file (decoded later from the
    inflated dataset, never read in place)."""
    for tag in PIXEL_DATA_TAGS:
        if tag in ds:
            return tag, None, len(ds[tag].value)
    return None


def _check_pixels(path: str, values: dict, ts: str, where, size: int, cut: bool = False) -> tuple:
    """(rows, columns, bits allocated, native, pixel problem) after checking the pixel data is
    usable (``cut``: the header was read to the end of the file)."""
    sop_class = _str(values, "SOPClassUID")
    if where is None or where[0] not in PIXEL_DATA_TAGS:
        from pydicom.uid import UID
        if cut:  # an image whose file ends in its header
            raise SkipFile(f"{path}: truncated: the file ends inside the header, before "
                           "(7FE0,0010) 'Pixel Data'", damaged=_damage_info(values, path))
        kind = UID(sop_class).name if sop_class else "unknown SOP class"
        raise SkipFile(f"{path}: no (7FE0,0010) 'Pixel Data' ({kind})")
    tag, offset, length = where
    rows, cols = _num(values, "Rows", int), _num(values, "Columns", int)
    if not rows or not cols:
        raise SkipFile(f"{path}: a (0028,0010) 'Rows' / (0028,0011) 'Columns' value of "
                       f"'{rows}'/'{cols}' is invalid, both must be positive")
    bits_alloc = _num(values, "BitsAllocated", int)
    if bits_alloc not in (1, 8, 16, 32, 64):
        raise SkipFile(f"{path}: a (0028,0100) 'Bits Allocated' value of '{bits_alloc}' is "
                       "invalid, it must be 1, 8, 16, 32 or 64")
    if tag != 0x7FE00010 and bits_alloc != (32 if tag == 0x7FE00008 else 64):
        raise SkipFile(f"{path}: a (0028,0100) 'Bits Allocated' value of '{bits_alloc}' is "
                       f"invalid for ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
                       f"'{PIXEL_DATA_TAGS[tag]}', it must be "
                       f"{32 if tag == 0x7FE00008 else 64}")
    native = ts in NATIVE_SYNTAXES and length != 0xFFFFFFFF and offset is not None
    if native:
        frames = _num(values, "NumberOfFrames", int) or 1
        spp = _num(values, "SamplesPerPixel", int) or 1
        _check_pixel_length(path, values, tag, (rows, cols, spp, frames, bits_alloc), length,
                            size - offset)
    elif ts in NATIVE_SYNTAXES:
        raise SkipFile(f"{path}: (7FE0,0010) 'Pixel Data' is encapsulated but the transfer "
                       f"syntax '{ts}' is uncompressed")
    return rows, cols, bits_alloc, native, _syntax_problem(ts, length)


def native_pixel_bytes(rows: int, cols: int, spp: int, frames: int, bits: int) -> int:
    """Bytes of native (uncompressed) pixel data: Rows x Columns x SamplesPerPixel x frames
    samples of BitsAllocated bits, without the pad byte to an even length.

    >>> native_pixel_bytes(512, 512, 1, 1, 16), native_pixel_bytes(3, 3, 1, 1, 1)
    (524288, 2)
    """
    return (rows * cols * spp * frames * bits + 7) // 8


def _check_pixel_length(path: str, values, tag: int, dims: tuple, length: int, left: int) -> None:
    """Native pixel data must hold exactly Rows x Columns x SamplesPerPixel x frames samples
    (plus one pad byte to an even length); anything else is damage, named as such."""
    rows, cols, spp, frames, bits = dims
    expected = native_pixel_bytes(rows, cols, spp, frames, bits)
    have = max(0, min(length, left))
    name = f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{PIXEL_DATA_TAGS[tag]}'"
    what = (f"{rows}x{cols}x{spp} sample(s) x {frames} frame(s) of {bits}-bit samples, from "
            "(0028,0010) 'Rows', (0028,0011) 'Columns', (0028,0002) 'Samples per Pixel', "
            "(0028,0008) 'Number of Frames' and (0028,0100) 'Bits Allocated'")
    if have < min(length, expected):
        raise SkipFile(f"{path}: truncated {name}: {have} bytes present, "
                       f"{expected} expected for {what}", damaged=_damage_info(values, path))
    if length != expected and not (expected % 2 and length == expected + 1):
        raise SkipFile(f"{path}: a {name} length of {length} bytes does not "
                       f"match the header, it must be {expected} bytes for {what}",
                       damaged=_damage_info(values, path))


def _syntax_problem(ts: str, length: int) -> Optional[str]:
    """Why pixel data in transfer syntax ``ts`` cannot be decoded, or None (decided from the
    header, so the group is refused before any pixel is read)."""
    if ts in NATIVE_SYNTAXES or ts == DEFLATED:  # deflated: inflated by pydicom, then native
        return None
    from .engine.codecs import SYNTAXES  # decoded without pydicom: not imported (~0.6 s CPU)
    if ts in SYNTAXES and length == 0xFFFFFFFF:
        return None
    from pydicom.uid import UID
    uid = UID(ts)
    name = f"a (0002,0010) 'Transfer Syntax UID' value of '{ts}'" + (
        f" ({uid.name})" if uid.name != ts else "")
    if length != 0xFFFFFFFF:
        return (f"{name} is a compressed syntax, but (7FE0,0010) 'Pixel Data' is not "
                f"encapsulated (a defined length of {length} bytes): the header does not match "
                "the data")
    try:
        from pydicom.pixels import get_decoder
        get_decoder(uid)
    except Exception:  # pydicom raises NotImplementedError (or ValueError) for unknown UIDs
        return f"{name} is not a transfer syntax dicomrecon can decode"
    return None


def _damage_info(values, path: str) -> dict:
    """Which volume a damaged image belonged to, as far as its header says."""
    def vec(kw, n):
        try:
            return _vec(values, kw, n, path)
        except SkipFile:
            return None
    return {"series_uid": _str(values, "SeriesInstanceUID") or None,
            "ipp": vec("ImagePositionPatient", 3), "iop": vec("ImageOrientationPatient", 6)}


def _text(ds, kw, path):
    return _str(ds, kw)


def _int(ds, kw, path):
    return _num(ds, kw, int)


def _float(ds, kw, path):
    return _num(ds, kw)


def _vector(n: int):
    return lambda ds, kw, path: _vec(ds, kw, n, path)


#: The SliceHeader fields that each come from one keyword alone: keyword -> (field, value of
#: (values, keyword, path)).  :func:`header_from_values` sets them all; :func:`_from_template`
#: converts only those whose text differs from the template's.
_FIELD_OF = {
    "SOPInstanceUID": ("sop_instance_uid", _text),
    "SOPClassUID": ("sop_class_uid", _text),
    "SeriesInstanceUID": ("series_instance_uid", _text),
    "StudyInstanceUID": ("study_instance_uid", _text),
    "FrameOfReferenceUID": ("frame_of_reference_uid", _text),
    "Modality": ("modality", _text),
    "Manufacturer": ("manufacturer", _text),
    "SeriesNumber": ("series_number", _int),
    "SeriesDescription": ("series_description", _text),
    "InstanceNumber": ("instance_number", _int),
    "AcquisitionNumber": ("acquisition_number", _int),
    "ImageType": ("image_type", lambda ds, kw, path: _image_type(ds.get(kw))),
    "ImagePositionPatient": ("ipp", _vector(3)),
    "ImageOrientationPatient": ("iop", _vector(6)),
    "PixelSpacing": ("pixel_spacing", _vector(2)),
    "SliceThickness": ("slice_thickness", _float),
    "GantryDetectorTilt": ("gantry_tilt", _float),
    "PhotometricInterpretation": ("photometric", _text),
    "PlanarConfiguration": ("planar_configuration", lambda ds, kw, path: _num(ds, kw, int) or 0),
    "RescaleType": ("rescale_type", _text),
    "EchoNumbers": ("echo_numbers", lambda ds, kw, path: None if ds.get(kw) is None
                    else str(ds.get(kw))),
    "EchoTime": ("echo_time", _float),
    "TemporalPositionIdentifier": ("temporal_position", _int),
    "PatientID": ("patient_id", _text),
    "PatientName": ("patient_name", _text),
    "TriggerTime": ("trigger_time", _float),
    "DiffusionBValue": ("diffusion_bvalue", _float),
    "DiffusionGradientOrientation": ("diffusion_direction", _vector(3)),
}
#: Scanned keywords that decide everything else of a header (pixel format and checks, rescale,
#: series text, whether pydicom must read the file): files share a template only when these
#: texts are equal.  The vendor keywords are compared per file (:func:`_label_scanned`).
_SHARED_KEYS = ("SpecificCharacterSet", "Modality", "Manufacturer", "ImageType", "Rows",
                "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                "PixelRepresentation", "PixelPaddingValue", "RescaleSlope", "RescaleIntercept",
                "ProtocolName", "StudyDate", "SeriesDate", "BodyPartExamined") \
    + tuple(_EXACT_WITH_PYDICOM)


def header_from_values(path: str, ds: dict, ts: str, where, size: int,
                       cut: bool = False) -> SliceHeader:
    """A :class:`SliceHeader` from keyword -> value (from GDCM or pydicom) and the pixel
    data location; raises :class:`SkipFile` for an unusable image."""
    rows, cols, bits_alloc, native, problem = _check_pixels(path, ds, ts, where, size, cut)
    slope = _num(ds, "RescaleSlope")
    intercept = _num(ds, "RescaleIntercept")
    pr = _num(ds, "PixelRepresentation", int) or 0
    return SliceHeader(
        path=path,
        **{name: how(ds, kw, path) for kw, (name, how) in _FIELD_OF.items()},
        rows=rows, columns=cols, number_of_frames=_num(ds, "NumberOfFrames", int) or 1,
        samples_per_pixel=_num(ds, "SamplesPerPixel", int) or 1,
        bits_allocated=bits_alloc,
        bits_stored=_num(ds, "BitsStored", int) or bits_alloc,
        pixel_representation=pr,
        rescale_slope=1.0 if slope is None else slope,
        rescale_intercept=0.0 if intercept is None else intercept,
        has_rescale=slope is not None or intercept is not None,
        pixel_padding_value=_padding(ds.get("PixelPaddingValue"), pr, bits_alloc),
        transfer_syntax=ts,
        pixel_offset=where[1] if native else None,
        text=SeriesText(_str(ds, "ProtocolName"), _str(ds, "StudyDate"),
                        _str(ds, "SeriesDate"), _str(ds, "BodyPartExamined")),
        pixel_tag=where[0],
        extra={"pixel_problem": problem} if problem else {},
    )
