"""Header tags of many files at once through GDCM's ``gdcm.Scanner``.

The scanner parses every file in C++ (any Part 10 encoding GDCM reads: implicit/explicit VR,
little/big endian, deflated) and stops before the first tag it was not asked for that lies past
the last wanted one, so pixel data is never read.  It returns values as text: text VRs as
stored, binary VRs (US, SS, FD...) printed by GDCM.  This module turns that text into Python
values, keyword by keyword.

What the scanner cannot give, and who reads it instead (once per file):

* nested data (enhanced functional groups, the Siemens CSA header): :mod:`dicomrecon.headers`
  parses those few files with pydicom;
* FD/FL values exactly: GDCM prints them with 6 significant digits, so files that carry one of
  the FD tags in the table are also parsed with pydicom;
* where the pixel bytes start: :func:`pixel_location` checks the element header that must sit
  just before the pixel bytes at the end of the file (never a guess: a mismatch sends the file
  to pydicom, which walks to the pixel data).
"""

from __future__ import annotations

import functools
import os
from typing import Iterable, Optional

from ..header_model import PIXEL_DATA_TAGS, PIXEL_VRS, element_header

#: VRs whose values the scanner prints as text we parse as numbers
_INT_VRS = {"IS", "US", "SS", "UL", "SL", "US or SS"}
_FLOAT_VRS = {"DS"}
#: binary floating point VRs: the scanner prints them with 6 significant digits (lossy)
LOSSY_VRS = {"FD", "FL"}
TRANSFER_SYNTAX = 0x00020010


def _tag(t: int):
    import gdcm
    return gdcm.Tag(t >> 16, t & 0xFFFF)


def _quiet() -> None:
    import gdcm
    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()
    gdcm.Trace.DebugOff()


def scan_values(paths: list, table: dict) -> dict:
    """``{path: {keyword: text}}`` for every file GDCM parsed (files it could not parse are
    absent).  ``table`` is keyword -> (tag, VR, name); sequences (SQ) must not be in it: asking
    for a tag past the pixel data makes GDCM read the pixel data too."""
    import gdcm
    _quiet()
    scanner = gdcm.Scanner()
    wanted = [(kw, _tag(tag)) for kw, (tag, vr, _) in table.items()]
    for _, t in wanted:
        scanner.AddTag(t)
    ts_tag = _tag(TRANSFER_SYNTAX)
    scanner.AddTag(ts_tag)
    paths = [p for p in paths if _c_string(p)]  # others are read by pydicom
    scanner.Scan(paths)
    keys = [p for p in paths if scanner.IsKey(p)]
    own: dict = {p: {} for p in keys}
    common: dict = {}  # keyword -> text of the tags every file has, with one value
    for kw, t in [("TransferSyntaxUID", ts_tag)] + wanted:
        _collect(scanner, kw, t, keys, own, common)
    return {p: {**common, **d} for p, d in own.items()} if common else own


def _c_string(path: str) -> bool:
    """GDCM takes file names as UTF-8 C strings: undecodable bytes cannot be passed."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _collect(scanner, kw: str, tag, keys: list, out: dict, common: dict) -> None:
    """Put one tag's text into ``out[path][kw]``, or into ``common[kw]`` when every file has
    that one value.  Python calls into GDCM cost more than the scan itself (each of these
    walks every file's values), so the first file's value is asked first: when all files have
    it, that is the tag's only call besides GetValue; a tag no file has costs one call."""
    first = scanner.GetValue(keys[0], tag) if keys else None
    if first is not None and first.isascii():  # (C strings going back in)
        having = scanner.GetAllFilenamesFromTagToValue(tag, first)
        if len(having) >= len(out) and set(having) >= out.keys():
            common[kw] = first
            return
        values = () if len(having) > len(out) // 2 else scanner.GetOrderedValues(tag)
    else:
        values = scanner.GetOrderedValues(tag)
        if not values:
            return
    if values and len(values) <= 4 and all(v.isascii() for v in values):
        for v in values:
            for p in scanner.GetAllFilenamesFromTagToValue(tag, v):
                if p in out:
                    out[p][kw] = v
        return
    get = scanner.GetValue
    for p in keys:
        v = get(p, tag)
        if v is not None:
            out[p][kw] = v


def read_uids(paths: list) -> dict:
    """``{path: (SOPInstanceUID, SOPClassUID)}`` of the files GDCM can read, in one pass."""
    table = {"SOPInstanceUID": (0x00080018, "UI", ""), "SOPClassUID": (0x00080016, "UI", "")}
    out = {}
    for p, vals in scan_values(paths, table).items():
        out[p] = tuple((vals.get(kw) or "").rstrip("\x00 ") for kw in table)
    return out


def read_plain_texts(paths: list, keyword: str, tag: int) -> dict:
    """``{path: text}`` of one text tag, in one GDCM pass, for the files whose value reads the
    same as pydicom's without decoding: ASCII, one value (no backslash), no NUL; trailing
    spaces removed as pydicom removes them, '' when the tag is absent.  Files GDCM cannot
    read, or whose value is anything else, are left out (the caller asks pydicom)."""
    out = {}
    for p, vals in scan_values(paths, {keyword: (tag, "SH", keyword)}).items():
        text = vals.get(keyword)
        if text is None:
            out[p] = ""
        elif text.isascii() and "\\" not in text and "\x00" not in text:
            out[p] = text.rstrip(" ")
    return out


@functools.lru_cache(maxsize=65536)
def convert(text: Optional[str], vr: str, utf8: bool):
    """A scanned value as Python: text stripped and split on backslashes (a tuple when
    multi-valued), IS/US/SS as int, DS/FD/FL as float; the raw text when a number does not parse
    (the reader that uses it reports it as invalid).  Cached: most values repeat across the
    files of a series, and the results are immutable."""
    if text is None:
        return None
    if not text.isascii():  # GDCM hands bytes over as UTF-8 with surrogate escapes
        raw = text.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8" if utf8 else "latin-1", "replace")
    text = text.rstrip("\x00 ")
    if not text:
        return None
    parts = [text] if vr in ("LT", "ST", "UT") else [p.strip() for p in text.split("\\")]
    if vr in _INT_VRS or vr in _FLOAT_VRS or vr in LOSSY_VRS:
        try:
            nums = [int(float(p)) if vr in _INT_VRS else float(p) for p in parts if p != ""]
        except ValueError:
            return text
        return nums[0] if len(nums) == 1 else (tuple(nums) or None)
    return parts[0] if len(parts) == 1 else tuple(parts)


def values_from_scan(scanned: dict, table: dict) -> dict:
    """Keyword -> Python value for one file's scanned text."""
    charset = scanned.get("SpecificCharacterSet") or ""
    utf8 = "192" in charset
    return {kw: convert(text, table[kw][1], utf8) for kw, text in scanned.items()
            if kw in table}


# --------------------------------------------------------------------------- pixel location
_ENCAPSULATED_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD) sequence delimitation


def pixel_location(path: str, size: int, value_length: Optional[int], little: bool,
                   implicit: bool) -> Optional[tuple]:
    """``(tag, value offset, length)`` of pixel data that is the last element of the file, from
    a check of its element header; None when the bytes there are not that header.

    ``value_length`` is the native length padded to even
    (:func:`dicomrecon.header_model.native_pixel_bytes` plus the pad byte), or None for encapsulated
    data, which must end with the (FFFE,E0DD) sequence delimiter (its offset is then unknown,
    and not needed: encapsulated frames are read by a decoder).
    """
    if value_length is None:
        if size < 8:
            return None
        return (0x7FE00010, None, 0xFFFFFFFF) if _read_at(path, size - 8, 8) == _ENCAPSULATED_END \
            else None
    head_len = 8 if implicit else 12
    start = size - value_length - head_len
    if start < 0:
        return None
    head = _read_at(path, start, head_len)
    if head is None or len(head) != head_len:
        return None
    return _check_header(head, start + head_len, value_length, little, implicit)


def _read_at(path: str, offset: int, n: int) -> Optional[bytes]:
    """``n`` bytes at ``offset`` (fewer at the end of the file), None when unreadable (one
    pread: no Python file object for a 12-byte read, once per file of a scan)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        if hasattr(os, "pread"):
            return os.pread(fd, n, offset)
        os.lseek(fd, offset, os.SEEK_SET)  # (Windows)
        return os.read(fd, n)
    except OSError:
        return None
    finally:
        os.close(fd)


def _check_header(head: bytes, offset: int, value_length: int, little: bool,
                  implicit: bool) -> Optional[tuple]:
    tag, vr, length, _ = element_header(head, little, implicit)
    if tag not in PIXEL_DATA_TAGS:
        return None
    if not implicit and (vr not in PIXEL_VRS or head[6:8] != b"\x00\x00"):
        return None
    return (tag, offset, length) if length == value_length else None


def file_sizes(paths: Iterable[str]) -> dict:
    out = {}
    for p in paths:
        try:
            out[p] = os.path.getsize(p)
        except OSError:
            out[p] = None
    return out
