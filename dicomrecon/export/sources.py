"""What an export reads: a Volume, a SimpleITK image, a volume file or a DICOM folder, as a
:class:`Source` - the grid, the voxel type and the slices one at a time - plus the automatic
reference (the sidecar beside a file, the source series of a DICOM input).

NIfTI and MetaImage files are streamed: ITK reads a few slices at a time
(``ImageFileReader`` with an extract region; ITK applies the file's orientation and scaling
exactly as ``ReadImage`` would), so exporting a file never holds the whole volume.  ITK cannot
stream NRRD: a plain NRRD file (attached raw or gzip data, one value per voxel) takes its
geometry and voxel type from ITK and its voxels from :func:`nrrd_slices`, a slice at a time;
other NRRD files and other formats are read whole.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from ..affines import decompose_affine
from ..errors import InputError, RefusedError
from ..volume import Volume, _affine
from .common import check_orthogonal
from .reference import Reference, is_sidecar, reference_from_sidecar, reference_from_volume

#: Volume files read with SimpleITK (which reads NIfTI into LPS).
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: ITK readers that read a region without reading the whole file.
STREAMING_IO = ("NiftiImageIO", "MetaImageIO")
#: A streamed file is read in at most this many chunks of slices (and chunks of at most
#: CHUNK_BYTES): a gzip file is decompressed from its start for every chunk.
CHUNKS = 4
CHUNK_BYTES = 32 << 20


@dataclass
class Source:
    """A volume to export: its grid and its slices, without holding more than it must."""

    what: str                       # "volume", "SimpleITK image", or the path read
    shape: tuple                    # (nz, ny, nx), or (nz, ny, nx, 3) for RGB
    dtype: np.dtype
    affine: np.ndarray              # (4, 4) index (x, y, z) -> LPS mm
    slices: Callable[[], Iterator[np.ndarray]]   # a fresh iterator over z = 0 .. nz-1
    rgb: bool = False
    modality: str = ""              # of the volume's DICOM source, when known
    inputs: list = field(default_factory=list)   # files / folders the output may never replace
    reference: Optional[Reference] = None        # the automatic reference
    keep: object = None             # what ``slices`` views (a SimpleITK image): kept alive


def sidecar_beside(path: str) -> Optional[str]:
    """``NAME.json`` beside ``NAME.nii.gz`` (or .nii/.nrrd/.mha...) when dicomrecon wrote it."""
    for ext in VOLUME_EXTENSIONS:
        if path.lower().endswith(ext):
            cand = path[: -len(ext)] + ".json"
            return cand if os.path.isfile(cand) and is_sidecar(cand) else None
    return None


def _volume_modality(vol: Volume) -> str:
    vp = vol.metadata.get("plan") if isinstance(vol.metadata, dict) else None
    try:
        return vp.slices[0].modality or ""
    except (AttributeError, IndexError):
        return ""


def from_volume(vol: Volume, what: str = "volume", inputs=None, reference=None) -> Source:
    """A Source over an in-memory Volume (no copy).  RGB only when ``metadata['rgb']`` says
    so (:attr:`Volume.is_rgb`: a missing key means grey)."""
    arr = vol.array

    def slices():
        for z in range(arr.shape[0]):
            yield arr[z]
    return Source(what, tuple(arr.shape), arr.dtype, np.asarray(vol.affine, float), slices,
                  vol.is_rgb, _volume_modality(vol), list(inputs or []), reference)


def from_sitk(image, what: str) -> Volume:
    """A Volume over a 3D SimpleITK image's own buffer (grey, or 8-bit RGB with
    ``metadata['rgb']``): no copy, so ``image`` must outlive the Volume."""
    import SimpleITK as sitk
    if image.GetDimension() != 3:
        raise InputError(f"{what}: a {image.GetDimension()}D image; export writes one 3D volume")
    comps = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayViewFromImage(image)
    if comps != 1 and not (comps == 3 and array.dtype == np.uint8):
        raise InputError(f"{what}: {comps} components per voxel of type {array.dtype}; "
                         "export writes grey values or 8-bit RGB")
    return Volume(array, _affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection()),
                  {"rgb": comps == 3})


def _itk_error(path: str, exc: RuntimeError) -> InputError:
    msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    sform = nifti_sform(path) if "orthonormal" in msg else None
    if sform is not None:  # name the shear rather than ITK's complaint
        try:
            check_orthogonal(decompose_affine(sform)[2])
        except RefusedError as refusal:
            raise RefusedError(f"{path}: {refusal}") from None
    return InputError(f"{path}: SimpleITK cannot read it ({msg})")


def _streamed(path: str) -> Optional[Source]:
    """A Source reading ``path`` a chunk of slices at a time, or None when ITK cannot stream
    it (not NIfTI / MetaImage, not 3D, or not grey / 8-bit RGB)."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        io = sitk.ImageFileReader.GetImageIOFromFileName(path)
        reader.SetImageIO(io)
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _itk_error(path, exc) from None
    comps, pid = reader.GetNumberOfComponents(), reader.GetPixelID()
    rgb = comps == 3 and pid == sitk.sitkVectorUInt8
    if reader.GetDimension() != 3 or not (comps == 1 or rgb):
        return None
    nx, ny, nz = reader.GetSize()
    dtype = np.dtype(np.uint8) if rgb else \
        sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pid)).dtype
    affine = _affine(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection())
    if io == "NrrdImageIO" and comps == 1:
        raw = nrrd_slices(path, (nz, ny, nx), dtype)
        return None if raw is None else Source(path, (nz, ny, nx), dtype, affine, raw,
                                               inputs=[path])
    if io not in STREAMING_IO:
        return None
    step = max(1, min(math.ceil(nz / CHUNKS), CHUNK_BYTES // max(1, nx * ny * comps *
                                                                  dtype.itemsize)))

    def slices():
        for z0 in range(0, nz, step):
            reader.SetExtractIndex([0, 0, z0])
            reader.SetExtractSize([nx, ny, min(step, nz - z0)])
            try:
                chunk = reader.Execute()
            except RuntimeError as exc:
                raise _itk_error(path, exc) from None
            view = sitk.GetArrayViewFromImage(chunk)   # valid only while ``chunk`` lives:
            for plane in view:                          # so each slice is yielded as a copy
                yield np.array(plane)
            del plane, view, chunk  # before the next chunk is read: one chunk at a time
    shape = (nz, ny, nx, 3) if rgb else (nz, ny, nx)
    return Source(path, shape, dtype, affine, slices, rgb, "", [path])


#: NRRD "type" values and the numpy kind and size they mean (NRRD format 1-5).
_NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1", "uchar": "u1", "unsigned char": "u1",
    "uint8": "u1", "uint8_t": "u1", "short": "i2", "short int": "i2", "signed short": "i2",
    "signed short int": "i2", "int16": "i2", "int16_t": "i2", "ushort": "u2",
    "unsigned short": "u2", "unsigned short int": "u2", "uint16": "u2", "uint16_t": "u2",
    "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4", "uint": "u4",
    "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4", "longlong": "i8",
    "long long": "i8", "long long int": "i8", "signed long long": "i8",
    "signed long long int": "i8", "int64": "i8", "int64_t": "i8", "ulonglong": "u8",
    "unsigned long long": "u8", "unsigned long long int": "u8", "uint64": "u8",
    "uint64_t": "u8", "float": "f4", "double": "f8",
}


def _nrrd_header(path: str) -> Optional[tuple]:
    """(fields, data offset) of an NRRD file with attached data, or None."""
    fields = {}
    try:
        with open(path, "rb") as f:
            if not f.readline().startswith(b"NRRD000"):
                return None
            for _ in range(1000):
                line = f.readline()
                if line in (b"\n", b"\r\n", b""):
                    return (fields, f.tell()) if line else None
                text = line.decode("latin-1").rstrip("\r\n")
                if text.startswith("#") or ":=" in text or ": " not in text:
                    continue
                key, value = text.split(": ", 1)
                fields[key.strip().lower()] = value.strip()
    except OSError:
        return None
    return None


def nrrd_slices(path: str, shape_zyx: tuple, dtype: np.dtype):
    """A function iterating the (ny, nx) slices of an NRRD file from disk, one at a time, or
    None unless the file is the simple case read here: attached raw or gzip data of
    ``shape_zyx`` (x fastest) and ``dtype`` (as ITK reads it), no skips, no vector axis."""
    head = _nrrd_header(path)
    if head is None:
        return None
    fields, offset = head
    nz, ny, nx = shape_zyx
    kind = _NRRD_TYPES.get(fields.get("type", "").lower())
    endian = {"little": "<", "big": ">"}.get(fields.get("endian", "little").lower())
    if kind is None or endian is None or np.dtype(kind) != np.dtype(dtype).newbyteorder("=") or \
            fields.get("sizes", "").split() != [str(nx), str(ny), str(nz)] or \
            fields.get("dimension") != "3" or fields.get("encoding", "").lower() not in \
            ("raw", "gzip", "gz") or any(k in fields for k in ("data file", "datafile")) or \
            any(fields.get(k, "0") != "0" for k in ("line skip", "lineskip", "byte skip",
                                                     "byteskip")):
        return None
    file_dtype = np.dtype(kind).newbyteorder(endian)
    gz = fields["encoding"].lower() != "raw"

    def slices():
        with open(path, "rb") as f:
            f.seek(offset)
            stream = f
            if gz:
                from isal import igzip
                stream = igzip.GzipFile(fileobj=f, mode="rb")
            n = ny * nx * file_dtype.itemsize
            for _ in range(nz):
                buf = stream.read(n)
                if len(buf) != n:
                    raise InputError(f"{path}: the NRRD data ends early (a slice of {n} bytes "
                                     f"is {len(buf)} bytes)")
                yield np.frombuffer(buf, file_dtype).reshape(ny, nx).astype(dtype, copy=False)
    return slices


def _read_file(path: str) -> Source:
    src = _streamed(path)
    if src is None:
        import SimpleITK as sitk
        try:
            image = sitk.ReadImage(path)
        except RuntimeError as exc:
            raise _itk_error(path, exc) from None
        src = from_volume(from_sitk(image, path), path, [path])
        src.keep = image
    side = sidecar_beside(path)
    src.reference = reference_from_sidecar(side) if side else None
    return src


def load_source(source) -> Source:
    """The :class:`Source` of an export: a Volume, a SimpleITK image, a volume file or a DICOM
    folder (or file) holding one volume.  Its ``inputs`` are the files and DICOM folders read,
    which the output may never replace."""
    if isinstance(source, Volume):
        return from_volume(source, reference=reference_from_volume(source))
    sitk = sys.modules.get("SimpleITK")  # an image exists only if it was imported: importing
    if sitk is not None and isinstance(source, sitk.Image):  # it costs ~100 MiB of RSS
        src = from_volume(from_sitk(source, "SimpleITK image"), "SimpleITK image")
        src.keep = source
        return src
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot export a {type(source).__name__}: pass a Volume, a "
                         "SimpleITK image, a volume file or a DICOM folder")
    path = os.path.abspath(os.fspath(source))
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if os.path.isfile(path) and path.lower().endswith(VOLUME_EXTENSIONS):
        return _read_file(path)
    if os.path.isdir(path) or os.path.isfile(path):
        from ..api import read_volume
        vol = read_volume(path)
        return from_volume(vol, path, [path if os.path.isdir(path) else os.path.dirname(path)],
                           reference_from_volume(vol))
    raise InputError(f"{path}: not a file or folder")  # pragma: no cover


def _nifti1_header(path: str) -> Optional[tuple]:
    """(byte order "<" or ">", the 348 header bytes) of a NIfTI-1 file, or None."""
    import gzip
    import struct
    try:
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(348)
    except OSError:
        return None
    if len(head) < 348:
        return None
    for e in "<>":
        if struct.unpack(e + "i", head[:4])[0] == 348:
            return e, head
    return None


def nifti_sform(path: str) -> Optional[np.ndarray]:
    """The (4, 4) sform of a NIfTI-1 file (RAS), or None when it has none or is not NIfTI-1."""
    import struct
    found = _nifti1_header(path)
    if found is None:
        return None
    e, head = found
    if struct.unpack(e + "h", head[254:256])[0] <= 0:
        return None
    rows = np.array(struct.unpack(e + "12f", head[280:328]), float).reshape(3, 4)
    return np.vstack([rows, [0, 0, 0, 1]])

