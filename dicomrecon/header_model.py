"""What a header IS, without reading any file: the tags dicomrecon reads (:data:`TAG_TABLE`),
the transfer syntaxes and pixel data tags it knows, the typed header of one image
(:class:`SliceHeader`, with :class:`SeriesText` and the vendor type :class:`MosaicTile`),
:class:`SkipFile` (why a file is not used) and the small helpers that turn a keyword -> value
mapping into typed values (:func:`num`, :func:`vec`, :func:`str_value`).

The readers (:mod:`dicomrecon.headers`, :mod:`dicomrecon.frames`) and the pixel data checks
(:mod:`dicomrecon.pixel_checks`) import from here; this module imports none of them.
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
#: Explicit-VR VRs of pixel data (and UN) whose element header has a 4-byte length after two
#: reserved bytes: 12 bytes in all (PS3.5 7.1.2)
PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN")


def element_header(head: bytes, little: bool, implicit: bool) -> tuple:
    """``(tag, VR or None, value length, header length)`` of the data element header at the
    start of ``head`` (at least 8 bytes); the value length is None when ``head`` ends before
    the 4-byte length of a :data:`PIXEL_VRS` header.  Any other explicit VR is read as a
    2-byte length."""
    e = "<" if little else ">"
    group, elem = struct.unpack_from(e + "HH", head)
    tag = (group << 16) | elem
    if implicit:
        return tag, None, struct.unpack_from(e + "L", head, 4)[0], 8
    vr = bytes(head[4:6])
    if vr in PIXEL_VRS:
        return tag, vr, struct.unpack_from(e + "L", head, 8)[0] if len(head) >= 12 else None, 12
    return tag, vr, struct.unpack_from(e + "H", head, 6)[0], 8

#: Deflated Explicit VR Little Endian: pydicom inflates it, then its pixel data is native
DEFLATED = "1.2.840.10008.1.2.1.99"

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

KEYWORD_OF = {tag: kw for kw, (tag, _, _) in TAG_TABLE.items()}
VR_OF = {tag: vr for tag, vr, _ in TAG_TABLE.values()}

# --- vendor tags (diffusion encoding, phase direction): see dicomrecon/vendor/diffusion.py
from .vendor.diffusion import PRIVATE_TAGS as _VENDOR_TAGS  # noqa: E402

KEYWORD_OF.update({tag: kw for kw, (tag, _, _) in _VENDOR_TAGS.items()})
VR_OF.update({tag: vr for tag, vr, _ in _VENDOR_TAGS.values()})


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


def image_type_of(v) -> tuple:
    """ImageType as a tuple of strings (empty when absent)."""
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(v.split("\\"))
    return tuple(str(x) for x in v)


def num(ds, kw, cast=float):
    """The value of ``kw`` (its first, when several) as ``cast``; None when absent or invalid."""
    v = ds.get(kw)
    if v is None or v == "":
        return None
    try:
        if isinstance(v, Sequence) and not isinstance(v, (str, bytes)):
            v = v[0]
        return cast(float(v)) if cast is int and isinstance(v, str) else cast(v)
    except (TypeError, ValueError):
        return None


def vec(ds, kw, n, path):
    """The ``n`` numbers of ``kw`` as a tuple; None when absent, :class:`SkipFile` when invalid."""
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


def padding_value(value, signed: int, bits: int):
    """PixelPaddingValue as the stored integer (US read of a signed value is re-signed)."""
    if not isinstance(value, int):
        return None
    if signed and bits in (8, 16, 32) and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _tagname(kw):
    tag, _, name = TAG_TABLE[kw]
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) '{name}'"


def str_value(ds, kw):
    """The value of ``kw`` as stripped text; "" when absent."""
    v = ds.get(kw)
    if v is None:
        return ""
    return str(v).strip()


def native_pixel_bytes(rows: int, cols: int, spp: int, frames: int, bits: int) -> int:
    """Bytes of native (uncompressed) pixel data: Rows x Columns x SamplesPerPixel x frames
    samples of BitsAllocated bits, without the pad byte to an even length.

    >>> native_pixel_bytes(512, 512, 1, 1, 16), native_pixel_bytes(3, 3, 1, 1, 1)
    (524288, 2)
    """
    return (rows * cols * spp * frames * bits + 7) // 8
