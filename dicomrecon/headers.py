"""Read the header tags dicomrecon needs from one file, without decoding pixels.

:func:`read_headers` returns one :class:`SliceHeader` (plain Python values) per image of a
file (one per frame of an enhanced multi-frame file, one per tile of a Siemens MOSAIC) or raises
:class:`SkipFile` with a reason naming the file, the tag and the value.  It also records where
the pixel bytes start, so that uncompressed pixel data can later be read straight into the
output array.  Little-endian Part 10 headers are read by a strict element walker that keeps only
the tags in :data:`TAG_TABLE`; anything else is read by pydicom.
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
TAGS = list(TAG_TABLE)

_KEYWORD_OF = {tag: kw for kw, (tag, _, _) in TAG_TABLE.items()}
_VR_OF = {tag: vr for tag, vr, _ in TAG_TABLE.values()}

# --- vendor tags (diffusion encoding, phase direction): see dicomrecon/vendor/diffusion.py
from .vendor.diffusion import PRIVATE_TAGS as _VENDOR_TAGS  # noqa: E402

TAGS += [tag for tag, _, _ in _VENDOR_TAGS.values()]
_KEYWORD_OF.update({tag: kw for kw, (tag, _, _) in _VENDOR_TAGS.items()})
_VR_OF.update({tag: vr for tag, vr, _ in _VENDOR_TAGS.values()})
_VENDOR_KEYS = tuple(_VENDOR_TAGS) + ("ImageComments",)
_BINARY = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d",
           "US or SS": "H"}
_NUMERIC_TEXT = {"DS": float, "IS": int}


def _fast_values(ds) -> dict:
    """Keyword -> Python value for the tags in :data:`TAGS` of a pydicom dataset read with
    ``specific_tags``, converted straight from the raw bytes (pydicom's per-keyword access
    costs ~1 ms a file; this is ~20 times cheaper)."""
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


# ------------------------------------------------------------------ fast header walker
class _Fallback(Exception):
    """The fast walker met something it does not handle; pydicom reads the file instead.

    ``partial`` holds the wanted elements read before it stopped (raw, as in :func:`_walk`)."""

    def __init__(self, message: str, partial: Optional[dict] = None):
        super().__init__(message)
        self.partial = partial or {}


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_UNPACK_TAG = struct.Struct("<HH").unpack_from
_UNPACK_L = struct.Struct("<L").unpack_from
_UNPACK_H = struct.Struct("<H").unpack_from


class _Reader:
    """The start of a file, read further only as the walk needs it."""

    def __init__(self, fp):
        self.fp = fp
        self.data = fp.read(16384)

    def need(self, end: int) -> bytes:
        while end > len(self.data):
            chunk = self.fp.read(max(65536, end - len(self.data)))
            if not chunk:
                raise _Fallback("end of file inside the header")
            self.data += chunk
        return self.data


def _walk(r: _Reader, pos: int, end, implicit: bool, raw: dict, top: bool):
    """Walk elements from ``pos`` to ``end`` (None: to an item delimiter).  Wanted top-level
    elements go into ``raw`` as {tag: (vr, bytes)}; sequences are skipped structurally.
    Returns ``(pos, pixel)`` where ``pixel`` is (tag, value offset, length) at Pixel Data."""
    while end is None or pos < end:
        d = r.need(pos + 8)
        group, elem = _UNPACK_TAG(d, pos)
        tag = (group << 16) | elem
        if tag == 0xFFFEE00D:  # item delimitation
            return pos + 8, None
        if implicit or group == 0xFFFE:
            vr, length, vpos = None, _UNPACK_L(d, pos + 4)[0], pos + 8
        else:
            vr = d[pos + 4:pos + 6]
            if not (vr.isalpha() and vr.isupper()):
                raise _Fallback(f"not a VR: {vr!r}")
            if vr in _LONG_VRS:
                d = r.need(pos + 12)
                length, vpos = _UNPACK_L(d, pos + 8)[0], pos + 12
            else:
                length, vpos = _UNPACK_H(d, pos + 6)[0], pos + 8
        if top and tag in PIXEL_DATA_TAGS:
            return pos, (tag, vpos, length)
        wanted = top and tag in _KEYWORD_OF
        if length == 0xFFFFFFFF:
            if vr not in (None, b"SQ", b"UN"):
                raise _Fallback("undefined length outside a sequence")
            if wanted:
                raw[tag] = ("SQ", b"")
            pos = _skip_sequence(r, vpos, implicit or vr == b"UN")
            continue
        if wanted:
            d = r.need(vpos + length)
            raw[tag] = (vr.decode("ascii") if vr else None, d[vpos:vpos + length])
        pos = vpos + length
    return pos, None


def _skip_sequence(r: _Reader, pos: int, implicit: bool) -> int:
    while True:
        d = r.need(pos + 8)
        group, elem = _UNPACK_TAG(d, pos)
        length = _UNPACK_L(d, pos + 4)[0]
        tag = (group << 16) | elem
        if tag == 0xFFFEE0DD:  # sequence delimitation
            return pos + 8
        if tag != 0xFFFEE000:
            raise _Fallback(f"unexpected tag {tag:08X} in a sequence")
        if length == 0xFFFFFFFF:
            pos, _ = _walk(r, pos + 8, None, implicit, {}, top=False)
        else:
            pos += 8 + length


def _walk_file(fp, size: int):
    """(values, transfer syntax, implicit, little, pixel location) of a Part 10 file with a
    little-endian dataset; raises :class:`_Fallback` for anything else."""
    r = _Reader(fp)
    d = r.data
    if len(d) < 144 or d[128:132] != b"DICM" or d[132:136] != b"\x02\x00\x00\x00" \
            or d[136:138] != b"UL":
        raise _Fallback("no preamble or no group length")
    meta_end = 144 + _UNPACK_L(d, 140)[0]
    meta: dict = {}
    _walk_meta(r, 144, meta_end, meta)
    ts = meta.get(0x00020010, b"").decode("ascii", "replace").rstrip("\x00 ")
    if not ts or ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        raise _Fallback("big endian, deflated or no transfer syntax")
    implicit = ts == "1.2.840.10008.1.2"
    raw: dict = {}
    try:
        _, pixel = _walk(r, meta_end, size, implicit, raw, top=True)
    except (_Fallback, struct.error, IndexError) as exc:
        raise _Fallback(str(exc), partial=raw) from None
    charset = raw.get(0x00080005, (None, b""))[1] or b""
    utf8 = b"192" in charset
    values = {_KEYWORD_OF[tag]: _convert(vr if vr and vr != "UN" else _VR_OF[tag], value,
                                         True, utf8)  # private tags may come as UN
              for tag, (vr, value) in raw.items()}
    return values, ts, implicit, True, pixel


def _walk_meta(r: _Reader, pos: int, end: int, meta: dict) -> None:
    while pos < end:
        d = r.need(pos + 12)
        group, elem = _UNPACK_TAG(d, pos)
        vr = d[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length, vpos = _UNPACK_L(d, pos + 8)[0], pos + 12
        else:
            length, vpos = _UNPACK_H(d, pos + 6)[0], pos + 8
        if group != 2 or length == 0xFFFFFFFF:
            raise _Fallback("unexpected element in the file meta information")
        meta[(group << 16) | elem] = r.need(vpos + length)[vpos:vpos + length]
        pos = vpos + length


class SkipFile(Exception):
    """A file that is not a usable DICOM image; the message says why.

    ``damaged`` is set for a DICOM image lost to damage (truncated, pixel data of the wrong
    length, unreadable header): ``{"series_uid", "ipp", "iop"}`` as far as they could be read
    (None when not), so that discovery can tell which volume lost a slice."""

    def __init__(self, message: str, damaged: Optional[dict] = None):
        super().__init__(message)
        self.damaged = damaged


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
    frame: int = 0                 # frame index within a multi-frame file (0-based)
    extra: dict = field(default_factory=dict)

    @property
    def multiframe_uid(self) -> Optional[str]:
        """SOPInstanceUID of a multi-frame file or a mosaic (its frames or tiles, and those of
        another file at the same positions, are different acquisitions); None otherwise."""
        return self.sop_instance_uid if (self.number_of_frames > 1 or "mosaic" in self.extra) \
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


def read_headers(path: str) -> list:
    """One :class:`SliceHeader` per image in a file: one, or one per frame of an enhanced
    multi-frame file (geometry and values from its functional groups).  Raises
    :class:`SkipFile` with a reason."""
    h = read_header(path)
    has_groups = h.extra.pop("_functional_groups")
    vendor = h.extra.pop("_vendor")
    if h.number_of_frames > 1 and has_groups:
        return _label_vendor(expand_frames(h), vendor)
    if h.number_of_frames == 1 and any(t.upper() == "MOSAIC" for t in h.image_type) \
            and h.ipp is not None and h.iop is not None and h.pixel_spacing is not None:
        return _label_vendor(expand_mosaic(h), vendor)
    from .vendor.uih import expand_vframe, is_vframe
    if is_vframe(h):  # UIH virtual-frame mosaic, placed by its per-slice private sequence
        return _label_vendor(expand_vframe(h, SliceHeader), vendor)
    if h.number_of_frames > 1:  # no functional groups: one header, refused by discovery
        h.extra["unexpanded_frames"] = True
    return _label_vendor([h], vendor)


def _label_vendor(headers: list, vendor: dict) -> list:
    """Diffusion b-value/direction from standard or vendor tags (dicomrecon.vendor)."""
    from .vendor.diffusion import label_diffusion
    for h in headers:
        if vendor.get("RepetitionTime") is not None:
            h.extra.setdefault("RepetitionTime", vendor["RepetitionTime"])
        label_diffusion(h, {**vendor, "DiffusionBValue": h.diffusion_bvalue,
                            "DiffusionGradientOrientation": h.diffusion_direction,
                            "DiffusionDirectionality": h.extra.get("DiffusionDirectionality")
                            or vendor.get("DiffusionDirectionality")})
    return headers


def _pydicom_header(fp, path: str):
    """The general path: pydicom parses the header (any encoding, no preamble, deflate)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=TAGS)
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
    where = None
    if ts != "1.2.840.10008.1.2.1.99":  # deflated: pydicom read from an inflated buffer
        where = _locate_pixels(fp, implicit, little)
    return values, ts, implicit, little, where


def _check_pixel_length(path: str, ds, dims: tuple, length: int, left: int) -> None:
    """Native pixel data must hold exactly Rows x Columns x SamplesPerPixel x frames samples
    (plus one pad byte to an even length); anything else is damage, named as such."""
    rows, cols, spp, frames, bits = dims
    expected = (rows * cols * spp * frames * bits + 7) // 8
    have = max(0, min(length, left))
    what = (f"{rows}x{cols}x{spp} sample(s) x {frames} frame(s) of {bits}-bit samples, from "
            "(0028,0010) 'Rows', (0028,0011) 'Columns', (0028,0002) 'Samples per Pixel', "
            "(0028,0008) 'Number of Frames' and (0028,0100) 'Bits Allocated'")
    if have < min(length, expected):
        raise SkipFile(f"{path}: truncated (7FE0,0010) 'Pixel Data': {have} bytes present, "
                       f"{expected} expected for {what}", damaged=_damage_info(ds, path))
    if length != expected and not (expected % 2 and length == expected + 1):
        raise SkipFile(f"{path}: a (7FE0,0010) 'Pixel Data' length of {length} bytes does not "
                       f"match the header, it must be {expected} bytes for {what}",
                       damaged=_damage_info(ds, path))


def _syntax_problem(ts: str, length: int) -> Optional[str]:
    """Why pixel data in transfer syntax ``ts`` cannot be decoded, or None (decided from the
    header, so the group is refused before any pixel is read)."""
    if ts in NATIVE_SYNTAXES:
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


def _damage_info(ds, path: str) -> dict:
    """Which volume a damaged image belonged to, as far as its header says."""
    def vec(kw, n):
        try:
            return _vec(ds, kw, n, path)
        except SkipFile:
            return None
    return {"series_uid": _str(ds, "SeriesInstanceUID") or None,
            "ipp": vec("ImagePositionPatient", 3), "iop": vec("ImageOrientationPatient", 6)}


def _partial_info(raw: dict, path: str) -> dict:
    values = {_KEYWORD_OF[tag]: _convert(vr or _VR_OF[tag], value, True, False)
              for tag, (vr, value) in raw.items()}
    return _damage_info(values, path)


def read_header(path: str) -> SliceHeader:
    """Read one file's header. Raises :class:`SkipFile` with a reason."""
    try:
        size = os.path.getsize(path)
        fp = open(path, "rb")
    except OSError as exc:
        raise SkipFile(f"{path}: cannot be read ({exc.strerror})")
    cut = None  # the walker met the end of the file inside the header
    with fp:
        try:
            ds, ts, implicit, little, where = _walk_file(fp, size)
        except (_Fallback, struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
            cut = exc if "end of file" in str(exc) else None
            # anything unusual or damaged: pydicom reads it, or says why it cannot
            fp.seek(0)
            try:
                ds, ts, implicit, little, where = _pydicom_header(fp, path)
            except SkipFile as skip:
                partial = getattr(exc, "partial", None)
                if partial and skip.damaged is None and "unreadable" in str(skip):
                    skip.damaged = _partial_info(partial, path)
                raise
    sop_class = _str(ds, "SOPClassUID")
    if where is None or where[0] not in PIXEL_DATA_TAGS:
        from pydicom.uid import UID
        kind = UID(sop_class).name if sop_class else "unknown SOP class"
        if ts == "1.2.840.10008.1.2.1.99":
            raise SkipFile(f"{path}: deflated transfer syntax '{ts}' is not supported")
        if cut is not None:
            raise SkipFile(f"{path}: truncated: the file ends inside the header, before "
                           "(7FE0,0010) 'Pixel Data'", damaged=_damage_info(ds, path))
        raise SkipFile(f"{path}: no (7FE0,0010) 'Pixel Data' ({kind})")
    tag, offset, length = where
    if tag != 0x7FE00010:
        raise SkipFile(f"{path}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) '{PIXEL_DATA_TAGS[tag]}' "
                       "is not supported, only (7FE0,0010) 'Pixel Data'")

    rows, cols = _num(ds, "Rows", int), _num(ds, "Columns", int)
    if not rows or not cols:
        raise SkipFile(f"{path}: a (0028,0010) 'Rows' / (0028,0011) 'Columns' value of "
                       f"'{rows}'/'{cols}' is invalid, both must be positive")
    bits_alloc = _num(ds, "BitsAllocated", int)
    if bits_alloc not in (1, 8, 16, 32, 64):
        raise SkipFile(f"{path}: a (0028,0100) 'Bits Allocated' value of '{bits_alloc}' is "
                       "invalid, it must be 1, 8, 16, 32 or 64")
    spp = _num(ds, "SamplesPerPixel", int) or 1
    frames = _num(ds, "NumberOfFrames", int) or 1
    native = ts in NATIVE_SYNTAXES and length != 0xFFFFFFFF
    if native:
        _check_pixel_length(path, ds, (rows, cols, spp, frames, bits_alloc), length,
                            size - offset)
    elif ts in NATIVE_SYNTAXES:
        raise SkipFile(f"{path}: (7FE0,0010) 'Pixel Data' is encapsulated but the transfer "
                       f"syntax '{ts}' is uncompressed")
    problem = _syntax_problem(ts, length)
    slope = _num(ds, "RescaleSlope")
    intercept = _num(ds, "RescaleIntercept")
    pr = _num(ds, "PixelRepresentation", int) or 0
    ppv = ds.get("PixelPaddingValue")
    echo = ds.get("EchoNumbers")
    return SliceHeader(
        path=path,
        sop_instance_uid=_str(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        series_instance_uid=_str(ds, "SeriesInstanceUID"),
        study_instance_uid=_str(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_str(ds, "FrameOfReferenceUID"),
        modality=_str(ds, "Modality"),
        manufacturer=_str(ds, "Manufacturer"),
        series_number=_num(ds, "SeriesNumber", int),
        series_description=_str(ds, "SeriesDescription"),
        instance_number=_num(ds, "InstanceNumber", int),
        acquisition_number=_num(ds, "AcquisitionNumber", int),
        image_type=_image_type(ds.get("ImageType")),
        ipp=_vec(ds, "ImagePositionPatient", 3, path),
        iop=_vec(ds, "ImageOrientationPatient", 6, path),
        pixel_spacing=_vec(ds, "PixelSpacing", 2, path),
        slice_thickness=_num(ds, "SliceThickness"),
        gantry_tilt=_num(ds, "GantryDetectorTilt"),
        rows=rows, columns=cols, number_of_frames=frames, samples_per_pixel=spp,
        photometric=_str(ds, "PhotometricInterpretation"),
        planar_configuration=_num(ds, "PlanarConfiguration", int) or 0,
        bits_allocated=bits_alloc,
        bits_stored=_num(ds, "BitsStored", int) or bits_alloc,
        pixel_representation=pr,
        rescale_slope=1.0 if slope is None else slope,
        rescale_intercept=0.0 if intercept is None else intercept,
        rescale_type=_str(ds, "RescaleType"),
        has_rescale=slope is not None or intercept is not None,
        pixel_padding_value=_padding(ppv, pr, _num(ds, "BitsAllocated", int)),
        echo_numbers=str(echo) if echo is not None else None,
        echo_time=_num(ds, "EchoTime"),
        temporal_position=_num(ds, "TemporalPositionIdentifier", int),
        transfer_syntax=ts,
        pixel_offset=offset if native else None,
        patient_id=_str(ds, "PatientID"),
        patient_name=_str(ds, "PatientName"),
        trigger_time=_num(ds, "TriggerTime"),
        diffusion_bvalue=_num(ds, "DiffusionBValue"),
        diffusion_direction=_vec(ds, "DiffusionGradientOrientation", 3, path),
        extra={**{k: _str(ds, k) for k in ("StudyDate", "SeriesDate", "ProtocolName",
                                             "BodyPartExamined") if ds.get(k) is not None},
               **({"pixel_problem": problem} if problem else {}),
               "_functional_groups": "PerFrameFunctionalGroupsSequence" in ds
               or "SharedFunctionalGroupsSequence" in ds,
               "_vendor": {k: ds[k] for k in _VENDOR_KEYS if ds.get(k) is not None}},
    )


# ------------------------------------------------------------------------ enhanced multi-frame
def _fg(frame, shared, seq: str):
    """The item of functional group ``seq`` for a frame: per-frame first, then shared."""
    for src in (frame, shared):
        if src is not None and seq in src and len(src[seq].value):
            return src[seq].value[0]
    return None


def expand_frames(h: SliceHeader) -> list:
    """Per-frame headers of an enhanced multi-frame file (PS3.3 C.7.6.16 functional groups)."""
    import pydicom
    try:
        return _frames(h, pydicom.dcmread(h.path, stop_before_pixels=True))
    except SkipFile:
        raise
    except Exception as exc:  # pydicom raises many types on damaged sequences and values
        raise SkipFile(f"{h.path}: unreadable functional groups ({type(exc).__name__}: {exc})")


def _frames(h: SliceHeader, ds) -> list:
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    if per and len(per) != h.number_of_frames:
        raise SkipFile(f"{h.path}: (5200,9230) 'Per-frame Functional Groups Sequence' has "
                       f"{len(per)} items, (0028,0008) 'Number of Frames' is {h.number_of_frames}")
    out = []
    for k in range(h.number_of_frames):
        fr = per[k] if per else None
        pos, ori = _fg(fr, shared, "PlanePositionSequence"), _fg(fr, shared, "PlaneOrientationSequence")
        meas, pvt = _fg(fr, shared, "PixelMeasuresSequence"), _fg(fr, shared, "PixelValueTransformationSequence")
        echo, content = _fg(fr, shared, "MREchoSequence"), _fg(fr, shared, "FrameContentSequence")
        diff = _fg(fr, shared, "MRDiffusionSequence")
        ftype = (_fg(fr, shared, "MRImageFrameTypeSequence") or _fg(fr, shared, "CTImageFrameTypeSequence")
                 or _fg(fr, shared, "PETFrameTypeSequence"))
        trig = _fg(fr, shared, "CardiacSynchronizationSequence")
        timing = _fg(fr, shared, "MRTimingAndRelatedParametersSequence")
        where = f"{h.path} frame {k + 1}"
        d = dict(h.__dict__)
        d.update(frame=k, extra=dict(h.extra))
        if h.pixel_offset is not None:
            d["pixel_offset"] = h.pixel_offset + k * h.frame_nbytes
        d["ipp"] = _vec(pos, "ImagePositionPatient", 3, where) if pos else h.ipp
        d["iop"] = _vec(ori, "ImageOrientationPatient", 6, where) if ori else h.iop
        if meas:
            d["pixel_spacing"] = _vec(meas, "PixelSpacing", 2, where) or h.pixel_spacing
            d["slice_thickness"] = _num(meas, "SliceThickness") or h.slice_thickness
        if pvt:
            slope, icpt = _num(pvt, "RescaleSlope"), _num(pvt, "RescaleIntercept")
            d["rescale_slope"] = 1.0 if slope is None else slope
            d["rescale_intercept"] = 0.0 if icpt is None else icpt
            d["rescale_type"] = _str(pvt, "RescaleType") or h.rescale_type
            d["has_rescale"] = slope is not None or icpt is not None
        if echo:
            d["echo_time"] = _num(echo, "EffectiveEchoTime")
        if content:
            d["temporal_position"] = _num(content, "TemporalPositionIndex", int)
            d["acquisition_number"] = _num(content, "FrameAcquisitionNumber", int) or h.acquisition_number
            d["extra"]["StackID"] = _str(content, "StackID")
        if diff:
            d["diffusion_bvalue"] = _num(diff, "DiffusionBValue")
            d["extra"]["DiffusionDirectionality"] = _str(diff, "DiffusionDirectionality")
            gseq = diff.get("DiffusionGradientDirectionSequence")
            if gseq:
                d["diffusion_direction"] = _vec(gseq[0], "DiffusionGradientOrientation", 3, where)
        if timing and _num(timing, "RepetitionTime") is not None:
            d["extra"]["RepetitionTime"] = _num(timing, "RepetitionTime")
        if trig:
            d["trigger_time"] = _num(trig, "NominalCardiacTriggerDelayTime")
        if ftype:
            ft = ftype.get("FrameType")
            if ft:
                d["image_type"] = tuple(str(x) for x in (ft if not isinstance(ft, str) else [ft]))
        out.append(SliceHeader(**d))
    return out


# ------------------------------------------------------------------------ Siemens MOSAIC
def expand_mosaic(h: SliceHeader) -> list:
    """One header per tile of a Siemens MOSAIC image (its slices laid out in a grid).

    The number of tiles and the slice normal come from the Siemens CSA image header (read by
    nibabel's ``nicom.csareader``); the tiles are square-tiled, ``ceil(sqrt(n))`` a side, in
    order along the CSA slice normal.  ImagePositionPatient of a mosaic is the corner of the
    whole mosaic: the first tile's origin is moved by half the size difference between mosaic
    and tile, as nibabel's MosaicWrapper and dcm2niix do; tile k lies k slice spacings
    (SpacingBetweenSlices, else SliceThickness) along the normal.  Without a usable CSA header
    the image stays one header and is refused with the reason.
    """
    import math

    import numpy as np
    import pydicom
    try:
        import warnings
        with warnings.catch_warnings():  # nibabel warns that its DICOM *readers* are
            warnings.simplefilter("ignore")  # experimental; only its CSA parser is used here
            from nibabel.nicom import csareader
    except ImportError:
        h.extra["mosaic_problem"] = "nibabel is not installed (pip install nibabel)"
        return [h]
    try:
        ds = pydicom.dcmread(h.path, stop_before_pixels=True)
        csa = csareader.get_csa_header(ds, "image")
        n = csareader.get_n_mosaic(csa) if csa else None
        normal = csareader.get_slice_normal(csa) if csa else None
        sbs = ds.get("SpacingBetweenSlices")
    except Exception as exc:  # damaged private data: keep one header, refused with the reason
        h.extra["mosaic_problem"] = f"the Siemens CSA header is unreadable ({type(exc).__name__})"
        return [h]
    if not n or normal is None:
        h.extra["mosaic_problem"] = ("the Siemens CSA image header (0029,1010) has no "
                                     "NumberOfImagesInMosaic / SliceNormalVector")
        return [h]
    side = math.ceil(math.sqrt(n))
    if h.rows % side or h.columns % side:
        h.extra["mosaic_problem"] = (f"a {h.rows}x{h.columns} mosaic does not divide into "
                                     f"{side}x{side} tiles for NumberOfImagesInMosaic {n}")
        return [h]
    tr, tc = h.rows // side, h.columns // side
    row, col = np.asarray(h.iop[:3]), np.asarray(h.iop[3:])
    ps = h.pixel_spacing
    first = (np.asarray(h.ipp) + col * ps[0] * (h.rows - tr) / 2
             + row * ps[1] * (h.columns - tc) / 2)
    dz = float(sbs) if sbs else (h.slice_thickness or 1.0)
    normal = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    out = []
    for k in range(n):
        d = dict(h.__dict__)
        d.update(frame=k, rows=tr, columns=tc,
                 ipp=tuple(float(v) for v in first + k * dz * normal),
                 extra={**h.extra, "mosaic": (h.rows, h.columns, k // side, k % side)})
        out.append(SliceHeader(**d))
    return out
