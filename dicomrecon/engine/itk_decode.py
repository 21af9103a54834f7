"""Decode pixel data through SimpleITK (ITK's GDCMImageIO): every transfer syntax GDCM reads.

Files are read in *our* order (the sorted slice list), never ITK's: single-frame files through
``ImageSeriesReader.SetFileNames``, multi-frame files and mosaics through ``ImageFileReader``,
once per file.

ITK's value rules are undone, so that no voxel differs from the stored value:

* GDCMImageIO applies RescaleSlope/Intercept itself and picks its own pixel type.  We ask for
  ``sitkFloat64`` (exact for every stored integer up to 32 bits and for the double results of
  ``stored * slope + intercept``), or ``sitkInt32`` when every pair is integer and samples have
  at most 16 bits (then exact integers; twice as fast), and invert with the pair GDCM applied:
  ``stored = rint((value - intercept) / slope)``.  The inversion is *proven* per file: it is
  kept only if ``stored * slope + intercept`` gives back every value bit for bit (in double,
  or in float32 where GDCM rescaled into float32 and the slope keeps stored values apart) and
  every stored value fits the stored type; otherwise the next candidate pair is tried (for a
  multi-frame file GDCM applies one pair, that of the first frame or the shared group, to all
  frames), and if none proves exact the file is refused with :class:`DecodeError`.
* GDCM inverts MONOCHROME1 (``2**BitsStored - 1 - s``, or ``-1 - s`` when signed) before the
  rescale; that is undone too (we never invert).  1-bit samples come back as 0/255 and are
  mapped back to 0/1 (checked).  Our own value plan (:mod:`dicomrecon.decode`) is then applied to the stored
  values, exactly as for the native reader.

What GDCMImageIO (ITK 5.4) cannot do, and who does it instead, under both engines:

* Float Pixel Data (7FE0,0008/0009): not readable ("Cannot read requested file"); pydicom reads
  those files (values as stored, float32/float64).
* multi-frame 1-bit data whose frames do not end on a byte boundary: GDCM starts each frame on a
  byte, PS3.5 8.1.1 packs them back to back; our unpacker reads them (engine/read.py).
* signed MONOCHROME1 with BitsStored < BitsAllocated: GDCM raises a logic error; the file is
  refused with that reason under ``itk`` (``auto`` reads it in place).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .native_decode import DecodeError, frame_dtype

#: single-frame files per ImageSeriesReader call (bounds the float64 buffer)
CHUNK = 32


def _sitk():
    import SimpleITK as sitk
    sitk.ProcessObject.GlobalWarningDisplayOff()  # "non uniform sampling": we sort, not ITK
    return sitk


def _array(image, rgb: bool, view: bool = False) -> np.ndarray:
    """The values of an ITK image as numpy (a view of ITK's buffer when ``view``)."""
    sitk = _sitk()
    arr = (sitk.GetArrayViewFromImage if view else sitk.GetArrayFromImage)(image)
    if rgb and arr.ndim >= 3 and arr.shape[-1] != 3:
        raise DecodeError(f"ITK returned {arr.shape} for a colour image")
    return arr


def integer_safe(headers: list) -> bool:
    """Whether ITK's rescaled values of these images are integers that int32 holds exactly:
    integer slopes and intercepts (every candidate pair) on samples of at most 16 bits.  Then
    ITK is asked for int32, half the bytes of float64 (measured ~2x faster to read)."""
    for h in headers:
        if h.samples_per_pixel == 3 or h.is_float or h.bits_allocated > 16:
            return False
        for m, b in [*h.file_rescale, (h.rescale_slope, h.rescale_intercept)]:
            if not (float(m).is_integer() and float(b).is_integer()
                    and 0 < abs(m) <= 1 << 14 and abs(b) < 1 << 30):
                return False
    return True


def _output_type(reader, rgb: bool, integer: bool) -> None:
    sitk = _sitk()
    if not rgb:
        reader.SetOutputPixelType(sitk.sitkInt32 if integer else sitk.sitkFloat64)


def read_series_view(paths: list, rgb: bool, integer: bool = False) -> tuple:
    """(n, rows, columns[, 3]) values of single-frame files, in the order given (int32 when
    ``integer``, see :func:`integer_safe`, else float64), as ``(view, image)``: the array is a
    view of ITK's buffer, valid while ``image`` is referenced.  No copy of the chunk: measured,
    the copy and the page faults of a fresh 32 MB buffer per chunk were a third of
    ``--engine itk``'s system time."""
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(paths))
    _output_type(reader, rgb, integer)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DecodeError(f"{paths[0]}..{paths[-1]}: ImageSeriesReader cannot decode "
                          f"({_short(exc)})")
    return _array(image, rgb, view=True), image


def read_file(path: str, rgb: bool, integer: bool = False) -> np.ndarray:
    """(frames, rows, columns[, 3]) values of one file (frames = 1 for a single frame)."""
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    _output_type(reader, rgb, integer)
    try:
        arr = _array(reader.Execute(), rgb)
    except RuntimeError as exc:
        raise DecodeError(f"{path}: ITK cannot decode the pixel data ({_short(exc)})")
    return arr if arr.ndim == (4 if rgb else 3) else arr[None]


def _short(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def stored_values(values: np.ndarray, headers: list, path: str) -> np.ndarray:
    """The stored values behind ITK's rescaled float64 ``values`` of one file, proven exact
    (see the module docstring).  ``headers`` are the file's slice headers (their rescale pairs
    are the candidates, the first header's first)."""
    h = headers[0]
    dtype = frame_dtype(h)
    if h.samples_per_pixel == 3 or h.is_float:
        return values.astype(dtype, copy=False)
    if h.bits_allocated == 1:
        if not np.isin(values, (0.0, 255.0)).all():
            raise DecodeError(f"{path}: ITK returned values other than 0/255 for 1-bit samples")
        return (values != 0).astype(dtype)
    info = np.iinfo(dtype)
    if values.dtype.kind == "i":
        return _stored_from_ints(values, headers, dtype, path)
    for slope, intercept in _candidates(headers):
        stored = np.rint(values if (slope, intercept) == (1.0, 0.0) else
                         (values - intercept) / slope)
        if stored.size and (stored.min() < info.min or stored.max() > info.max):
            continue  # (MONOCHROME1 inversion keeps the range: the check holds before it)
        if _reproduces(stored, slope, intercept, values):
            return _monochrome1_undone(stored, h).astype(dtype)
    raise DecodeError(f"{path}: the values ITK decoded cannot be mapped back exactly to stored "
                      f"{dtype} values with the file's (0028,1053) 'Rescale Slope' / "
                      "(0028,1052) 'Rescale Intercept'; refusing rather than changing a voxel")


def _stored_from_ints(values: np.ndarray, headers: list, dtype, path: str) -> np.ndarray:
    """The integer case of :func:`stored_values`: ``values - intercept`` must divide exactly by
    the slope (exact integer arithmetic), and the quotient fit the stored type."""
    info = np.iinfo(dtype)
    for slope, intercept in _candidates(headers):
        m, b = int(slope), int(intercept)
        shifted = values - np.int32(b) if b else values  # = stored * m: no int32 overflow
        if m == 1:
            stored = shifted
        else:
            stored, rest = np.divmod(shifted, m)
            if rest.any():
                continue
        if stored.size and (stored.min() < info.min or stored.max() > info.max):
            continue
        return _monochrome1_undone(stored, headers[0]).astype(dtype)
    raise DecodeError(f"{path}: the values ITK decoded cannot be mapped back exactly to stored "
                      f"{dtype} values with the file's (0028,1053) 'Rescale Slope' / "
                      "(0028,1052) 'Rescale Intercept'; refusing rather than changing a voxel")


def _monochrome1_undone(stored: np.ndarray, h) -> np.ndarray:
    """GDCM inverts MONOCHROME1 before rescaling: ``(2**BitsStored - 1) - s`` for unsigned
    samples, ``-1 - s`` (bitwise not) for signed ones.  Both are their own inverse."""
    if h.photometric != "MONOCHROME1":
        return stored
    if h.pixel_representation:
        return -1 - stored
    return ((1 << h.bits_stored) - 1) - stored


def _reproduces(stored: np.ndarray, slope: float, intercept: float,
                values: np.ndarray) -> bool:
    """``stored * slope + intercept`` gives back ITK's values bit for bit: in double, or in
    float32 (GDCM rescales into float32 when it judges that enough) provided the slope spans
    more than two float32 steps at the largest value, so that no two stored integers share a
    float32 result."""
    mapped = stored * slope + intercept
    if np.array_equal(mapped, values):
        return True
    top = float(np.abs(values).max()) if values.size else 0.0
    if abs(slope) <= 2 * float(np.spacing(np.float32(top))):
        return False
    return np.array_equal(mapped.astype(np.float32), values)


def _candidates(headers: list) -> list:
    """Rescale pairs GDCM may have applied to the file: the file's first frame's (GDCM applies
    one pair to a whole multi-frame file), then each frame's own, then none."""
    pairs = []
    for pair in [*headers[0].file_rescale,
                 *((h.rescale_slope, h.rescale_intercept) for h in headers)]:
        pair = (float(pair[0]), float(pair[1]))
        if pair not in pairs and pair[0] != 0:
            pairs.append(pair)
    if (1.0, 0.0) not in pairs:
        pairs.append((1.0, 0.0))
    return pairs


def read_with_pydicom(path: str) -> Optional[np.ndarray]:
    """(frames, rows, columns[, 3]) of a file GDCM cannot read (float pixel data)."""
    import pydicom
    try:
        arr = pydicom.dcmread(path).pixel_array
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # decoders raise many types (a Rust codec's panic, pyo3's
        # PanicException, is a BaseException): name the file
        raise DecodeError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})")
    return arr
