"""What export reads from a volume file, slice by slice, equals what SimpleITK's ReadImage reads:
NIfTI and MetaImage through ITK's streaming reader, plain NRRD through dicomrecon's own slice
reader (ITK cannot stream NRRD), anything else whole.  SimpleITK is the oracle throughout."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from dicomrecon.errors import InputError
from dicomrecon.export import export_series
from dicomrecon.export.sources import load_source, nrrd_slices

def _image(array: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.8, 0.7, 2.0))
    img.SetOrigin((-5.0, 3.0, 9.0))
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    return img


def _assert_reads_as_sitk(path, streamed: bool):
    src = load_source(str(path))
    oracle = sitk.ReadImage(str(path))
    expected = sitk.GetArrayFromImage(oracle)
    assert (src.keep is None) == streamed           # streamed sources hold no whole image
    assert src.shape == expected.shape and src.dtype == expected.dtype
    got = list(src.slices())        # kept past the next read: each must be its own copy
    assert len(got) == expected.shape[0]
    for z, plane in enumerate(got):
        np.testing.assert_array_equal(plane, expected[z], err_msg=f"slice {z}")
    np.testing.assert_allclose(src.affine[:3, :3], np.reshape(oracle.GetDirection(), (3, 3))
                               * np.asarray(oracle.GetSpacing()), atol=1e-6)
    np.testing.assert_allclose(src.affine[:3, 3], oracle.GetOrigin(), atol=1e-6)


@pytest.mark.parametrize("ext,dtype", [(".nii", np.int16), (".nii.gz", np.float32),
                                       (".mha", np.uint16), (".nrrd", np.int32)])
def test_streamed_files_equal_readimage(tmp_path, ext, dtype):
    rng = np.random.default_rng(1)
    array = rng.integers(-3000, 3000, (9, 6, 5)).astype(dtype)
    path = tmp_path / f"v{ext}"
    sitk.WriteImage(_image(array), str(path))
    _assert_reads_as_sitk(path, streamed=True)


def test_scaled_big_endian_and_compressed_files_equal_readimage(tmp_path):
    import struct
    import nibabel as nib
    from dicomrecon.writers import write_volume
    array = np.random.default_rng(5).integers(-500, 500, (4, 3, 5)).astype(np.int16)
    write_volume(str(tmp_path / "scaled.nii"), array, np.eye(4), "nii")
    head = bytearray((tmp_path / "scaled.nii").read_bytes())
    struct.pack_into("<ff", head, 112, 2.5, -7.0)            # scl_slope, scl_inter
    (tmp_path / "scaled.nii").write_bytes(bytes(head))
    _assert_reads_as_sitk(tmp_path / "scaled.nii", streamed=True)
    big = nib.Nifti1Image(array.T.astype(">i2"), np.diag([0.5, 0.6, 2, 1]),
                          nib.Nifti1Header(endianness=">"))
    big.set_data_dtype(">i2")
    nib.save(big, str(tmp_path / "big.nii"))
    _assert_reads_as_sitk(tmp_path / "big.nii", streamed=True)
    sitk.WriteImage(_image(array.astype(np.uint16)), str(tmp_path / "c.mha"), useCompression=True)
    _assert_reads_as_sitk(tmp_path / "c.mha", streamed=True)


def test_gzip_nrrd_equals_readimage(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, (7, 4, 6)).astype(np.uint8)
    path = tmp_path / "v.nrrd"
    sitk.WriteImage(_image(array), str(path), useCompression=True)
    assert b"encoding: gzip" in path.read_bytes()[:400]
    _assert_reads_as_sitk(path, streamed=True)


def _hand_nrrd(path, array: np.ndarray, type_name: str, endian: str, gz: bool = False):
    nz, ny, nx = array.shape
    head = (f"NRRD0004\n# hand-made\ntype: {type_name}\ndimension: 3\n"
            "space: left-posterior-superior\n"
            f"sizes: {nx} {ny} {nz}\nspace directions: (0,0.7,0) (0.8,0,0) (0,0,-2)\n"
            "kinds: domain domain domain\n"
            f"endian: {endian}\nencoding: {'gzip' if gz else 'raw'}\n"
            "space origin: (-5,3,9)\n\n").encode()
    data = array.astype(array.dtype.newbyteorder(">" if endian == "big" else "<")).tobytes()
    path.write_bytes(head + (gzip.compress(data) if gz else data))


@pytest.mark.parametrize("gz", [False, True])
def test_big_endian_nrrd_equals_readimage(tmp_path, gz):
    array = np.random.default_rng(3).normal(size=(5, 3, 4)).astype(np.float32)
    path = tmp_path / "big.nrrd"
    _hand_nrrd(path, array, "float", "big", gz)
    _assert_reads_as_sitk(path, streamed=True)


def test_detached_nrrd_is_read_whole(tmp_path):
    array = np.arange(60, dtype=np.int16).reshape(5, 3, 4)
    (tmp_path / "v.raw").write_bytes(array.tobytes())
    (tmp_path / "v.nhdr").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 3 5\n"
        "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\n"
        "endian: little\nencoding: raw\nspace origin: (0,0,0)\ndata file: v.raw\n\n")
    assert nrrd_slices(str(tmp_path / "v.nhdr"), (5, 3, 4), np.dtype(np.int16)) is None
    _assert_reads_as_sitk(tmp_path / "v.nhdr", streamed=False)


def test_truncated_nrrd_is_an_input_error(tmp_path):
    path = tmp_path / "short.nrrd"
    _hand_nrrd(path, np.zeros((4, 3, 3), np.int16), "short", "little")
    data = path.read_bytes()
    slices = nrrd_slices(str(path), (5, 3, 3), np.dtype(np.int16))   # one slice more
    assert slices is None                                            # sizes disagree: not ours
    path.write_bytes(data.replace(b"sizes: 3 3 4", b"sizes: 3 3 5"))
    slices = nrrd_slices(str(path), (5, 3, 3), np.dtype(np.int16))
    with pytest.raises(InputError, match="ends early"):
        list(slices())


def test_nrrd_export_equals_nifti_export(tmp_path):
    """The same volume exported from NRRD (own reader) and NIfTI (ITK streaming) gives the
    same pixels and positions."""
    array = np.random.default_rng(4).integers(-1000, 2000, (6, 5, 4)).astype(np.int16)
    for ext in ("nrrd", "nii"):
        sitk.WriteImage(_image(array), str(tmp_path / f"v.{ext}"))
    a = export_series(str(tmp_path / "v.nrrd"), tmp_path / "a", modality="CT")
    b = export_series(str(tmp_path / "v.nii"), tmp_path / "b", modality="CT")
    import pydicom
    for fa, fb in zip(a.files, b.files):
        da, db = pydicom.dcmread(fa), pydicom.dcmread(fb)
        assert da.PixelData == db.PixelData
        assert da.ImagePositionPatient == db.ImagePositionPatient
        assert da.ImageOrientationPatient == db.ImageOrientationPatient


def test_rgb_only_when_marked(tmp_path):
    """A missing metadata['rgb'] means grey, as Volume.is_rgb and the conversion sidecar
    ("components": 1) say: (nz, ny, nx, 3) uint8 without it is refused, not guessed."""
    from dicomrecon.errors import RefusedError
    from dicomrecon.volume import Volume
    colour = np.zeros((2, 3, 4, 3), np.uint8)
    with pytest.raises(RefusedError, match=r"metadata\['rgb'\] = True"):
        export_series(Volume(colour, np.eye(4)), tmp_path / "grey")
    result = export_series(Volume(colour, np.eye(4), {"rgb": True}), tmp_path / "rgb")
    assert result.values is None and len(result.files) == 2
