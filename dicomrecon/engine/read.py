"""The stored values of a sorted list of slices, each source file read once.

Slices are grouped by file (the frames of a multi-frame file, the tiles of a mosaic), each file
is read in one visit, and every frame lands at its place in the output array.  No state is kept
between calls (thread-safe): a multi-frame file decoded for one group is not cached for another.

Engines:

* ``itk``: single-frame files through ``ImageSeriesReader`` with our file order (chunks of
  :data:`itk_decode.CHUNK` files, two chunks at a time), multi-frame files and mosaics through
  ``ImageFileReader``.
* ``auto``: uncompressed files read in place (:mod:`.native_decode`); lossless grey-scale
  RLE, JPEG-LS and JPEG files decoded straight from their fragments by the codec libraries
  (:mod:`.codecs`: no pydicom Dataset, no ITK pipeline); everything else through ITK (pydicom
  for float pixel data); one file per task on a thread pool of one thread per core (the
  codecs release the GIL while they decode).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import numpy as np

from . import codecs, itk_decode
from .native_decode import DecodeError, frame_dtype, read_native, read_whole


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class _Progress:
    def __init__(self, fn: Optional[Callable[[int, int], None]], total: int):
        self.fn, self.total, self.done = fn, total, 0

    def add(self, n: int) -> None:
        self.done += n
        if self.fn:
            self.fn(self.done, self.total)


def read_stack(slices: list, engine: str, progress, preloaded: dict) -> np.ndarray:
    """(nz, ny, nx[, 3]) stored values of ``slices`` (in this order)."""
    h0 = slices[0]
    shape = (len(slices), h0.rows, h0.columns) + ((3,) if h0.samples_per_pixel == 3 else ())
    out = np.empty(shape, dtype=frame_dtype(h0))
    files: dict = {}
    prog = _Progress(progress, len(slices))
    for k, h in enumerate(slices):
        if h.instance_key in preloaded:
            out[k] = preloaded[h.instance_key]
            prog.add(1)
        else:
            files.setdefault(h.path, []).append((k, h))
    native = {p: ks for p, ks in files.items()
              if ks[0][1].is_native and (engine == "auto" or _gdcm_misreads(ks[0][1]))}
    others = {p: ks for p, ks in files.items() if p not in native}
    # reads release the GIL: two threads keep both cores copying (and faulting in ``out``),
    # 16 files a task (a task per 512 KB file costs about as much as its read)
    items = list(native.items())
    batches = [items[i:i + 16] for i in range(0, len(items), 16)]
    _windowed(batches, lambda batch: [_read_native_file(p, ks, out) for p, ks in batch],
              lambda batch, _: prog.add(sum(len(ks) for _, ks in batch)))
    if engine == "itk":
        _read_itk(others, out, prog)
    else:
        _parallel(others, out, prog, lambda path, ks: _decode_file_auto(path, ks, out))
    return out


def _decode_file_auto(path: str, ks: list, out: np.ndarray) -> Optional[np.ndarray]:
    """None when :mod:`.codecs` decoded the file's frames straight into ``out`` (in the worker
    thread), else every frame of the file (to be placed)."""
    if codecs.decode_into(path, ks, out):
        return None
    return _decode_file(path, ks, "auto")


def _gdcm_misreads(h) -> bool:
    """GDCM (ITK 5.4) assumes each 1-bit frame starts on a byte boundary; PS3.5 8.1.1 packs
    frames back to back.  Such files are read by our unpacker under both engines."""
    return h.bits_allocated == 1 and h.number_of_frames > 1 and (h.rows * h.columns) % 8 != 0


def _read_native_file(path: str, ks: list, out: np.ndarray) -> None:
    try:
        with open(path, "rb") as fp:
            whole = None
            for k, h in ks:
                if h.tile is None:
                    read_native(fp, h, out[k])
                    continue
                if whole is None:  # the mosaic is read once, then cut into its tiles
                    whole = read_whole(fp, h, (h.tile.mosaic_rows, h.tile.mosaic_columns))
                out[k] = _tile(whole, h)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read pixel data ({exc.strerror})")


def _tile(whole: np.ndarray, h) -> np.ndarray:
    r, c = h.tile.row, h.tile.column
    return whole[r * h.rows:(r + 1) * h.rows, c * h.columns:(c + 1) * h.columns]


def _place(frames: np.ndarray, ks: list, out: np.ndarray, path: str) -> None:
    """Put a decoded file's frames (frames, rows, columns[, 3]) at their output slices."""
    for k, h in ks:
        if h.tile is not None:
            out[k] = _tile(frames[0], h)
            continue
        if h.frame >= len(frames) or frames[h.frame].shape != out[k].shape:
            raise DecodeError(f"{path}: decoded pixel data has shape {frames.shape}, expected "
                              f"frame {h.frame + 1} of {out[k].shape} from (0028,0010)/"
                              "(0028,0011)/(0028,0002)/(0028,0008)")
        out[k] = frames[h.frame]


#: Codecs where pydicom decodes faster than GDCM: RLE, through pylibjpeg-rle (512x512 CT:
#: ~2-7 ms a slice against ~50-100 ms for GDCM's RLE decoder, on this loaded machine);
#: ``auto`` uses pydicom for the RLE files :mod:`.codecs` does not take (colour), ``itk``
#: never does.
PYDICOM_FASTER = {"1.2.840.10008.1.2.5"}  # RLE Lossless


def _decode_file(path: str, ks: list, engine: str = "auto") -> np.ndarray:
    """Every frame of one file, as stored values: ITK, or pydicom for float pixel data (and,
    under ``auto``, for the codecs in :data:`PYDICOM_FASTER`)."""
    headers = [h for _, h in ks]
    h = headers[0]
    if h.is_float or (engine == "auto" and h.transfer_syntax in PYDICOM_FASTER):
        arr = itk_decode.read_with_pydicom(path)
        frames = arr.reshape((-1,) + tuple(arr.shape[-3 if h.samples_per_pixel == 3 else -2:]))
        return frames.astype(frame_dtype(h), copy=False)
    values = itk_decode.read_file(path, h.samples_per_pixel == 3,
                                  itk_decode.integer_safe(headers))
    return itk_decode.stored_values(values, headers, path)


def _decode_file_itk(path: str, ks: list) -> np.ndarray:
    return _decode_file(path, ks, "itk")


def _parallel(files: dict, out: np.ndarray, prog: _Progress, decode_one) -> None:
    """Decode files on a thread pool; each worker puts its file's frames in place (the copy
    and the first touch of ``out`` run on both cores, not in the consuming thread)."""
    def work(item):
        path, ks = item
        frames = decode_one(path, ks)
        if frames is not None:  # None: already in place
            _place(frames, ks, out, path)
    _windowed(list(files.items()), work, lambda item, _: prog.add(len(item[1])))


def _windowed(items: list, work, consume, workers: Optional[int] = None) -> None:
    """``consume(item, work(item))`` for every item, in order, with ``work`` on a thread pool
    and at most two tasks per thread in flight (so results waiting to be consumed never hold
    more than a few files' worth of memory)."""
    if not items:
        return
    workers = workers or (_workers() if len(items) > 1 else 1)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                consume(done, future.result())
        while pending:
            done, future = pending.popleft()
            consume(done, future.result())


def _read_itk(files: dict, out: np.ndarray, prog: _Progress) -> None:
    """ImageSeriesReader for runs of single-frame files, ImageFileReader for the rest."""
    single = [(p, ks) for p, ks in files.items()
              if len(ks) == 1 and ks[0][1].number_of_frames == 1 and ks[0][1].tile is None
              and not ks[0][1].is_float]
    rest = {p: ks for p, ks in files.items() if (p, ks) not in single}
    chunks = [single[i:i + itk_decode.CHUNK] for i in range(0, len(single), itk_decode.CHUNK)]

    def read_chunk(chunk):  # in a worker: ITK's read, our inversion and the copy into out
        headers = [ks[0][1] for _, ks in chunk]
        values, image = itk_decode.read_series_view(  # image: keeps ITK's buffer alive
            [p for p, _ in chunk], headers[0].samples_per_pixel == 3,
            itk_decode.integer_safe(headers))
        for i, (p, ks) in enumerate(chunk):
            _place(itk_decode.stored_values(values[i:i + 1], [ks[0][1]], p), ks, out, p)
        del values, image

    _windowed(chunks, read_chunk, lambda chunk, _: prog.add(len(chunk)),
              workers=min(2, _workers()))
    _parallel(rest, out, prog, _decode_file_itk)
