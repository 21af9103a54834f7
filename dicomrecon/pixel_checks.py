"""Where a file's pixel data is and whether it is complete and decodable, decided from the
header alone (no pixel is decoded): :func:`locate_pixels` (after pydicom's header),
:func:`scanned_pixels` (after GDCM's scan), :func:`deflated_pixels` (in an inflated dataset),
then :func:`check_pixels`, which raises :class:`SkipFile` for a missing, truncated or
mis-sized pixel data element (with :func:`damage_info`: which volume lost the image) and
names a transfer syntax that cannot be decoded.

Of dicomrecon's header modules it imports only :mod:`dicomrecon.header_model` (GDCM's file
reads, the codec table and pydicom's UID names lazily, where needed); the reader,
:mod:`dicomrecon.headers`, calls it.
"""

from __future__ import annotations

from typing import Optional

from .header_model import (DEFLATED, NATIVE_SYNTAXES, PIXEL_DATA_TAGS, SkipFile,
                           element_header, native_pixel_bytes, num, str_value, vec)


def locate_pixels(fp, implicit: bool, little: bool):
    """At the position pydicom stopped: return (tag, value offset, length) or None."""
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    tag, _, length, head_len = element_header(head, little, implicit)
    return tag, start + head_len, -1 if length is None else length


def scanned_pixels(path: str, values: dict, ts: str, size: int) -> Optional[tuple]:
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


def deflated_pixels(ds) -> Optional[tuple]:
    """(tag, None, length) of the pixel data of a deflated file (decoded later from the
    inflated dataset, never read in place)."""
    for tag in PIXEL_DATA_TAGS:
        if tag in ds:
            return tag, None, len(ds[tag].value)
    return None


def check_pixels(path: str, values: dict, ts: str, where, size: int, cut: bool = False) -> tuple:
    """(rows, columns, bits allocated, native, pixel problem) after checking the pixel data is
    usable (``cut``: the header was read to the end of the file)."""
    sop_class = str_value(values, "SOPClassUID")
    if where is None or where[0] not in PIXEL_DATA_TAGS:
        from pydicom.uid import UID
        if cut:  # an image whose file ends in its header
            raise SkipFile(f"{path}: truncated: the file ends inside the header, before "
                           "(7FE0,0010) 'Pixel Data'", damaged=damage_info(values, path))
        kind = UID(sop_class).name if sop_class else "unknown SOP class"
        raise SkipFile(f"{path}: no (7FE0,0010) 'Pixel Data' ({kind})")
    tag, offset, length = where
    rows, cols = num(values, "Rows", int), num(values, "Columns", int)
    if not rows or not cols:
        raise SkipFile(f"{path}: a (0028,0010) 'Rows' / (0028,0011) 'Columns' value of "
                       f"'{rows}'/'{cols}' is invalid, both must be positive")
    bits_alloc = num(values, "BitsAllocated", int)
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
        frames = num(values, "NumberOfFrames", int) or 1
        spp = num(values, "SamplesPerPixel", int) or 1
        _check_pixel_length(path, values, tag, (rows, cols, spp, frames, bits_alloc), length,
                            size - offset)
    elif ts in NATIVE_SYNTAXES:
        raise SkipFile(f"{path}: (7FE0,0010) 'Pixel Data' is encapsulated but the transfer "
                       f"syntax '{ts}' is uncompressed")
    return rows, cols, bits_alloc, native, _syntax_problem(ts, length)


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
                       f"{expected} expected for {what}", damaged=damage_info(values, path))
    if length != expected and not (expected % 2 and length == expected + 1):
        raise SkipFile(f"{path}: a {name} length of {length} bytes does not "
                       f"match the header, it must be {expected} bytes for {what}",
                       damaged=damage_info(values, path))


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


def damage_info(values, path: str) -> dict:
    """Which volume a damaged image belonged to, as far as its header says."""
    def vector_or_none(kw, n):
        try:
            return vec(values, kw, n, path)
        except SkipFile:
            return None
    return {"series_uid": str_value(values, "SeriesInstanceUID") or None,
            "ipp": vector_or_none("ImagePositionPatient", 3),
            "iop": vector_or_none("ImageOrientationPatient", 6)}
