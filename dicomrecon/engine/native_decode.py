"""Stored values of uncompressed frames, read straight from the file into the output array.

The byte offset comes from the header reader (a checked element header, see
:mod:`dicomrecon.engine.gdcm_headers`).  Each file is opened once; all the frames (or mosaic
tiles) a group needs from it are read in that one visit.  This path is the ``auto`` engine's
choice for uncompressed data because scripts/benchmark.py measures it faster than
ImageSeriesReader, and tests/test_engine.py shows it voxel-identical to it.
"""

from __future__ import annotations

import numpy as np

from ..errors import RefusedError


class DecodeError(RefusedError):
    """Pixel data that cannot be decoded or turned into finite values: the group is refused
    (a :class:`RefusedError`, exit 5, from the API; convert refuses the volume and goes on).
    The message names the file, the tag and the reason; ``findings`` holds it as a finding."""

    def __init__(self, message: str, *, tag: str = "(7FE0,0010)", code: str = "DECODE_FAILED"):
        from ..geometry import ERROR, Finding
        self.tag = tag
        super().__init__(message, [Finding(code, ERROR, message, tag)])


def frame_dtype(h) -> np.dtype:
    """The stored sample type of a frame: (u)int of BitsAllocated, float32/64 for float pixel
    data, uint8 for 1-bit (unpacked)."""
    if h.is_float:
        return np.dtype("<f4" if h.bits_allocated == 32 else "<f8")
    if h.bits_allocated == 1:
        return np.dtype("u1")
    kind = "i" if h.pixel_representation else "u"
    return np.dtype(f"{kind}{h.bits_allocated // 8}")


def read_native(fp, h, into: np.ndarray) -> np.ndarray:
    """One native frame of ``h`` (already open as ``fp``) into ``into`` (rows, columns[, 3])."""
    if h.bits_allocated == 1:
        return _read_bits(fp, h, into)
    if h.samples_per_pixel == 3 and h.planar_configuration == 1:  # RRR...GGG...BBB...
        planes = np.empty((3,) + into.shape[:2], dtype=into.dtype)
        _readinto(fp, h, h.pixel_offset, planes)
        into[...] = np.moveaxis(planes, 0, -1)
        return into
    _readinto(fp, h, h.pixel_offset, into)
    return into


def _readinto(fp, h, offset: int, into: np.ndarray) -> None:
    fp.seek(offset)
    n = fp.readinto(memoryview(into.view(np.uint8).reshape(-1)))
    if n != into.nbytes:
        raise DecodeError(f"{h.path}: truncated ({h.pixel_tag >> 16:04X},"
                          f"{h.pixel_tag & 0xFFFF:04X}) pixel data: {n} bytes read, "
                          f"{into.nbytes} expected")
    if h.byte_order == ">" and into.dtype.itemsize > 1:
        into.byteswap(inplace=True)


def _read_bits(fp, h, into: np.ndarray) -> np.ndarray:
    """BitsAllocated 1: frames are packed back to back, least significant bit first (PS3.5
    8.1.1), without byte alignment between frames."""
    n = h.rows * h.columns
    first_bit = h.frame * n
    start, end = first_bit // 8, (first_bit + n + 7) // 8
    buf = np.empty(end - start, dtype=np.uint8)
    _readinto(fp, h, h.pixel_offset + start, buf)
    bits = np.unpackbits(buf, bitorder="little")[first_bit - start * 8:first_bit - start * 8 + n]
    into[...] = bits.reshape(h.rows, h.columns)
    return into


def read_whole(fp, h, shape: tuple) -> np.ndarray:
    """The whole (first) frame of a file of ``shape``: a mosaic before it is cut in tiles."""
    out = np.empty(shape, dtype=frame_dtype(h))
    whole = _Whole(h, shape)
    return read_native(fp, whole, out)


class _Whole:
    """A view of a tile header as the whole image it comes from (rows/columns of the mosaic)."""

    def __init__(self, h, shape):
        self._h, self.rows, self.columns = h, shape[0], shape[1]
        self.frame = 0

    def __getattr__(self, name):
        return getattr(self._h, name)
