"""Compressed frames decoded straight from the file's fragments, without a pydicom Dataset.

The ``auto`` engine's fast path for the lossless syntaxes of grey-scale images.  Each file is
read once (one ``read``), its top-level data set is walked element by element (explicit VR
little endian, as every encapsulated syntax is) to the (7FE0,0010) Pixel Data element, whose
items are the fragments; each frame's fragments go to one codec library call:

* RLE Lossless: imagecodecs' PackBits decoder, one call per segment (byte plane);
* JPEG-LS Lossless: imagecodecs' CharLS (``jpegls_decode``);
* JPEG Lossless, Non-Hierarchical (process 14, and its selection value 1): imagecodecs'
  ``jpegsof3_decode`` (Chris Rorden's lossless decoder, dcm2niix's).

Each decoder is *strict*: a stream cut short or overrunning the image raises, and the file goes
to the general path, which decodes it or refuses it.  That rules out, measured on cut streams:
libjpeg-turbo (``jpeg8_decode``: 2.3 ms a frame, but warns and fills the rest of a truncated
image), liblj92 (``ljpeg_decode``) and imagecodecs' ``dicomrle_decode`` (silent on a segment
cut by a few bytes) -- all would have given wrong voxels where ITK/GDCM refuses.

JPEG-LS and JPEG decode straight into the frame's slice of the output array (``out=``), and
imagecodecs releases the GIL while it decodes, so the files decode on both cores.  Measured per
512x512 int16 frame (scripts/benchmark.py's CT re-encoded by GDCM, CPU time): JPEG-LS ~4.5 ms
(ITK/GDCM: ~9), JPEG lossless ~4.9 ms (ITK/GDCM: ~10), RLE ~0.25 ms (pylibjpeg-rle's
``decode_frame`` takes as long, but keeps the GIL, so two threads ran slower than one: the 300
RLE slices converted in 0.55 s instead of 0.65 s once it was replaced; through a pydicom
Dataset ~2-3 ms).

The values are the stored values as the codec gives them (unsigned bit patterns for signed
data: :func:`dicomrecon.decode._fix_bits` sign-extends them from BitsStored, exactly as for
native data).  tests/test_engine.py shows this path voxel-identical to ImageSeriesReader on
the corpus and on GDCM-encoded synthetic series.

Anything this path does not handle returns None, and the caller decodes the file the general
way (ITK, or pydicom), which also names what is wrong with a damaged file: colour images,
lossy syntaxes (their inverse DCT may differ between libraries by one unit), frames spread
over fragments without an offset table that says where, a header it cannot walk.
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

from .native_decode import frame_dtype

RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_LOSSLESS = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")
SYNTAXES = frozenset((RLE, JPEG_LS) + JPEG_LOSSLESS)

_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"))
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_U32 = struct.Struct("<L")
_TAG = struct.Struct("<HH")


class _Unwalkable(Exception):
    """The bytes are not the data set this walker expects: decode the general way."""


def handles(h) -> bool:
    """Whether this path may decode the images of header ``h``."""
    return (h.transfer_syntax in SYNTAXES and h.samples_per_pixel == 1 and h.tile is None
            and h.bits_allocated in (8, 16) and not h.is_float)


def decode_into(path: str, ks: list, out: np.ndarray) -> bool:
    """Decode the frames ``ks`` ([(output index, header), ...], one file) of ``path`` straight
    into ``out[index]`` (no intermediate array); False when this path does not apply (the
    caller then decodes the whole file the general way, overwriting what was written)."""
    h = ks[0][1]
    if out.dtype != frame_dtype(h) or out.shape[1:] != (h.rows, h.columns):
        return False
    frames = _file_frames(path, h)
    if frames is None or any(hk.frame >= len(frames) for _, hk in ks):
        return False
    return _guarded(lambda: all(_decode_into(frames[hk.frame], h, out[k]) for k, hk in ks))


def _file_frames(path: str, h) -> Optional[list]:
    """Each frame's fragments (memoryviews of the file read once), or None."""
    if not handles(h):
        return None
    try:
        with open(path, "rb") as fp:
            buf = memoryview(fp.read())
        return _frames(_fragments(buf), h.number_of_frames)
    except (_Unwalkable, OSError, struct.error):
        return None


def _guarded(work) -> bool:
    """``work()``, with a decoder's refusal of a malformed stream as False (the general path
    then decodes the file or refuses it with a reason).  Decoders raise many types:
    imagecodecs' own errors, ValueError, and (from a Rust decoder) pyo3's PanicException, a
    BaseException: whatever a decoder raises on a malformed stream means "not here"."""
    try:
        return bool(work())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        return False


def _decode_into(parts: list, h, into: np.ndarray) -> bool:
    """Decode one frame's fragments into ``into`` (C-contiguous (rows, columns)); False when
    the codec's image does not fit it."""
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    import imagecodecs
    if h.transfer_syntax == RLE:
        return _rle_into(data, into, imagecodecs.packbits_decode)
    decode = imagecodecs.jpegls_decode if h.transfer_syntax == JPEG_LS else \
        imagecodecs.jpegsof3_decode
    arr = decode(data, out=into)
    if arr.shape != into.shape or arr.dtype.kind not in "ui" or arr.itemsize > into.itemsize:
        return False
    if not np.shares_memory(arr, into):  # the codec made its own array (e.g. 8-bit samples
        into[...] = arr                   # in 16-bit words): the values, widened
    return True


def _rle_into(data, into: np.ndarray, packbits_decode) -> bool:
    """One RLE Lossless frame (PS3.5 G.3): a 64-byte header (the number of segments, then
    their offsets), then one PackBits segment per byte of a sample, most significant first.
    Each segment must give exactly rows x columns bytes: a cut or overrunning segment is
    declined, never filled."""
    n_seg = into.itemsize
    if len(data) < 64 or _U32.unpack_from(data, 0)[0] != n_seg:
        return False
    offsets = list(struct.unpack_from(f"<{n_seg}L", data, 4)) + [len(data)]
    if offsets[0] != 64 or any(b <= a for a, b in zip(offsets, offsets[1:])):
        return False
    plane = into.size
    raw = into.reshape(-1).view(np.uint8)
    big = into.dtype.byteorder == ">" or (into.dtype.byteorder == "=" and not np.little_endian)
    for i in range(n_seg):
        seg = packbits_decode(data[offsets[i]:offsets[i + 1]])
        if len(seg) != plane:
            return False
        raw[(i if big else n_seg - 1 - i)::n_seg] = np.frombuffer(seg, dtype=np.uint8)
    return True


def _frames(fragments: list, n_frames: int) -> Optional[list]:
    """The fragments of each frame: all of them for one frame, one each when there are as
    many as frames; otherwise (an offset table would be needed) None."""
    if not fragments:
        return None
    if n_frames <= 1:
        return [fragments]
    if len(fragments) == n_frames:
        return [[f] for f in fragments]
    return None


def _fragments(buf: memoryview) -> list:
    """The fragments (without the Basic Offset Table item) of the top-level Pixel Data."""
    if len(buf) < 132 or bytes(buf[128:132]) != b"DICM":
        raise _Unwalkable("no DICM prefix")
    pos = _walk_to_pixels(buf, 132)
    items = []
    while True:
        tag, length = _item_header(buf, pos)
        if tag == _SEQ_END:
            break
        if tag != _ITEM or length == _UNDEFINED or pos + 8 + length > len(buf):
            raise _Unwalkable("bad fragment item")
        items.append(buf[pos + 8:pos + 8 + length])
        pos += 8 + length
    return items[1:]  # the first item is the Basic Offset Table


def _item_header(buf: memoryview, pos: int) -> tuple:
    if pos + 8 > len(buf):
        raise _Unwalkable("item past the end")
    group, elem = _TAG.unpack_from(buf, pos)
    return (group << 16) | elem, _U32.unpack_from(buf, pos + 4)[0]


def _walk_to_pixels(buf: memoryview, pos: int) -> int:
    """Walk the top-level elements from ``pos``; return where the items of an encapsulated
    (7FE0,0010) start."""
    last = -1
    while pos + 8 <= len(buf):
        tag, vr, length, head = _element(buf, pos, implicit=False)
        if tag <= last:
            raise _Unwalkable("tags out of order")
        last = tag
        if tag == _PIXEL_DATA:
            if length != _UNDEFINED:
                raise _Unwalkable("pixel data not encapsulated")
            return pos + head
        pos += head
        if length == _UNDEFINED:
            pos = _skip_sequence(buf, pos, implicit=vr == b"UN")
        else:
            pos += length
    raise _Unwalkable("no pixel data")


def _element(buf: memoryview, pos: int, implicit: bool) -> tuple:
    """(tag, VR, value length, header length) of the element at ``pos``."""
    group, elem = _TAG.unpack_from(buf, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:
        return tag, None, _U32.unpack_from(buf, pos + 4)[0], 8
    vr = bytes(buf[pos + 4:pos + 6])
    if vr in _LONG_VRS:
        if pos + 12 > len(buf):
            raise _Unwalkable("element header past the end")
        return tag, vr, _U32.unpack_from(buf, pos + 8)[0], 12
    if not (vr.isalpha() and vr.isupper()):
        raise _Unwalkable("not explicit VR")
    return tag, vr, struct.unpack_from("<H", buf, pos + 6)[0], 8


def _skip_sequence(buf: memoryview, pos: int, implicit: bool) -> int:
    """Past the sequence delimiter of an undefined-length sequence whose items start at ``pos``
    (an undefined-length UN holds implicit VR data, PS3.5 6.2.2)."""
    while True:
        tag, length = _item_header(buf, pos)
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Unwalkable("not an item")
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item(buf, pos, implicit)


def _skip_item(buf: memoryview, pos: int, implicit: bool) -> int:
    """Past the item delimiter of an undefined-length item whose data set starts at ``pos``."""
    while True:
        if pos + 8 > len(buf):
            raise _Unwalkable("item past the end")
        tag, vr, length, head = _element(buf, pos, implicit)
        pos += head
        if tag == _ITEM_END:
            return pos
        if length == _UNDEFINED:
            pos = _skip_sequence(buf, pos, implicit or vr == b"UN")
        else:
            pos += length
        if pos > len(buf):
            raise _Unwalkable("element past the end")
