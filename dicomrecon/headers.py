"""Read the header tags dicomrecon needs from one file, without decoding pixels.

:func:`read_headers` (one file) and :func:`read_many` (many, each read once) return one
:class:`~dicomrecon.header_model.SliceHeader` (plain Python values) per image of a file (one
per frame of an enhanced multi-frame file, one per tile of a Siemens MOSAIC) or a
:class:`~dicomrecon.header_model.SkipFile` with a reason naming the file, the tag and the value.
GDCM's scanner reads the tags in :data:`SCAN_TABLE` of every file
(:mod:`dicomrecon.engine.gdcm_headers`), and scanned files of one kind share a template header;
pydicom parses, once, the files that need nested data (enhanced functional groups, the Siemens
CSA header, expanded by :mod:`dicomrecon.frames`) or that GDCM cannot read (so that the reason
is named).  :func:`header_from_values` turns either's keyword -> value mapping into the header.

What a header is lives in :mod:`dicomrecon.header_model`; where the pixel data starts (so that
uncompressed pixel data can later be read straight into the output array) and whether it is
complete is checked in :mod:`dicomrecon.pixel_checks`.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Optional

from .header_model import (DEFLATED, KEYWORD_OF, PIXEL_DATA_TAGS, TAG_TABLE, VR_OF, SeriesText,
                           SkipFile, SliceHeader, image_type_of, num, padding_value, str_value,
                           vec)
from .pixel_checks import (check_pixels, damage_info, deflated_pixels, locate_pixels,
                           scanned_pixels)
from .vendor.diffusion import PRIVATE_TAGS as _VENDOR_TAGS

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
        kw = KEYWORD_OF.get(int(tag))
        if kw is not None:
            vr = getattr(elem, "VR", None)
            vr = vr if vr and vr != "UN" else VR_OF[int(tag)]  # private tags may come as UN
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
            or any(str(t).upper() in ("MOSAIC", "VFRAME") for t in image_type_of(image_type))
            or any(kw in values for kw in _EXACT_WITH_PYDICOM))


def _headers_of(path: str, scanned: Optional[dict], size: Optional[int],
                shared: Optional[dict] = None) -> list:
    if size is None:
        raise SkipFile(f"{path}: cannot be read ({'no such file' if not os.path.exists(path) else 'permission denied'})")
    values = None
    ts = "" if scanned is None else (scanned.get("TransferSyntaxUID") or "").rstrip("\x00 ")
    if scanned is not None:
        kind = _shared_of(scanned, ts, {} if shared is None else shared)
        if not kind.needs_dataset:
            where = scanned_pixels(path, kind.values, ts, size)
            if where is not None:
                return [_label_scanned(_from_template(kind, path, scanned, ts, where, size),
                                       scanned, kind)]
        values = kind.values if kind.texts is scanned else _values_of(scanned)
    try:
        return _headers_with_pydicom(path, size, deflated=ts.startswith(DEFLATED))
    except SkipFile as skip:  # what GDCM could read says which volume lost the image
        if values and skip.damaged is None and "unreadable" in str(skip):
            skip.damaged = damage_info(values, path)
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
    sop = UID(str_value(values, "SOPClassUID"))
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
        where = deflated_pixels(ds if deflated else pydicom.dcmread(path))
    else:
        where = locate_pixels(fp, implicit, little)
    return ds, values, ts, where


def _text(ds, kw, path):
    return str_value(ds, kw)


def _int(ds, kw, path):
    return num(ds, kw, int)


def _float(ds, kw, path):
    return num(ds, kw)


def _vector(n: int):
    return lambda ds, kw, path: vec(ds, kw, n, path)


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
    "ImageType": ("image_type", lambda ds, kw, path: image_type_of(ds.get(kw))),
    "ImagePositionPatient": ("ipp", _vector(3)),
    "ImageOrientationPatient": ("iop", _vector(6)),
    "PixelSpacing": ("pixel_spacing", _vector(2)),
    "SliceThickness": ("slice_thickness", _float),
    "GantryDetectorTilt": ("gantry_tilt", _float),
    "PhotometricInterpretation": ("photometric", _text),
    "PlanarConfiguration": ("planar_configuration", lambda ds, kw, path: num(ds, kw, int) or 0),
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
    rows, cols, bits_alloc, native, problem = check_pixels(path, ds, ts, where, size, cut)
    slope = num(ds, "RescaleSlope")
    intercept = num(ds, "RescaleIntercept")
    pr = num(ds, "PixelRepresentation", int) or 0
    return SliceHeader(
        path=path,
        **{name: how(ds, kw, path) for kw, (name, how) in _FIELD_OF.items()},
        rows=rows, columns=cols, number_of_frames=num(ds, "NumberOfFrames", int) or 1,
        samples_per_pixel=num(ds, "SamplesPerPixel", int) or 1,
        bits_allocated=bits_alloc,
        bits_stored=num(ds, "BitsStored", int) or bits_alloc,
        pixel_representation=pr,
        rescale_slope=1.0 if slope is None else slope,
        rescale_intercept=0.0 if intercept is None else intercept,
        has_rescale=slope is not None or intercept is not None,
        pixel_padding_value=padding_value(ds.get("PixelPaddingValue"), pr, bits_alloc),
        transfer_syntax=ts,
        pixel_offset=where[1] if native else None,
        text=SeriesText(str_value(ds, "ProtocolName"), str_value(ds, "StudyDate"),
                        str_value(ds, "SeriesDate"), str_value(ds, "BodyPartExamined")),
        pixel_tag=where[0],
        extra={"pixel_problem": problem} if problem else {},
    )
