"""Volume operations checked against independent implementations: highdicom's Volume (index
mapping, slicing, flips, padding, reorientation), nibabel (loading the NIfTI we write), and
SimpleITK (resampling), plus the invariant that every kept voxel stays at its world position."""

import numpy as np
import pytest

from dicomrecon.affines import axis_codes, normalise_codes
from dicomrecon.volume import Volume

hd = pytest.importorskip("highdicom")


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))  # a proper rotation


def oblique_volume(seed=0, shape_zyx=(6, 7, 8), dtype=np.int16) -> Volume:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    affine[:3, :3] = _rotation(seed) * np.array([0.7, 0.9, 2.5])
    affine[:3, 3] = rng.uniform(-100, 100, 3)
    array = rng.integers(-1000, 1000, size=shape_zyx).astype(dtype)
    return Volume(array, affine)


def to_hd(vol: Volume):
    """The same volume as highdicom sees it: affine taking (slice, row, column) indices."""
    return hd.Volume(vol.array, vol.affine[:, [2, 1, 0, 3]], coordinate_system="PATIENT")


def assert_same_as_hd(ours: Volume, theirs):
    np.testing.assert_array_equal(ours.array, theirs.array)
    np.testing.assert_allclose(ours.affine[:, [2, 1, 0, 3]], theirs.affine, atol=1e-9)


def assert_voxels_in_place(before: Volume, after: Volume):
    """Every voxel of ``after`` holds the value ``before`` has at the same world position."""
    zyx = np.indices(after.array.shape[:3]).reshape(3, -1).T
    world = after.world(zyx[:, ::-1])
    idx = before.index(world, check_bounds=True)
    np.testing.assert_allclose(before.index(world, round=False), idx, atol=1e-6)
    np.testing.assert_array_equal(after.array[tuple(zyx.T)],
                                  before.array[idx[:, 2], idx[:, 1], idx[:, 0]])


@pytest.mark.parametrize("seed", range(4))
def test_index_and_world_equal_highdicom(seed):
    vol = oblique_volume(seed)
    rng = np.random.default_rng(seed + 10)
    ijk = rng.uniform(0, 5, size=(20, 3))  # (x, y, z)
    pts = vol.world(ijk)
    np.testing.assert_allclose(pts, to_hd(vol).map_indices_to_reference(ijk[:, ::-1]), atol=1e-9)
    theirs = to_hd(vol).map_reference_to_indices(pts, round_output=True)
    np.testing.assert_array_equal(vol.index(pts), theirs[:, ::-1])
    np.testing.assert_allclose(vol.index(pts, round=False), ijk, atol=1e-9)


def test_index_check_bounds_names_the_point():
    vol = oblique_volume(1)
    inside = vol.world([[0, 0, 0], [7, 6, 5]])
    assert vol.index(inside, check_bounds=True).tolist() == [[0, 0, 0], [7, 6, 5]]
    outside = vol.world([[0, 0, 0], [8.2, 0, 0]])
    with pytest.raises(IndexError, match="outside the volume"):
        vol.index(outside, check_bounds=True)
    with pytest.raises(RuntimeError):  # highdicom agrees that it is outside
        to_hd(vol).map_reference_to_indices(outside, check_bounds=True)


@pytest.mark.parametrize("key", [
    (slice(1, 4), slice(2, 6), slice(0, 5)),
    (slice(None), slice(None, None, 2), slice(3, None)),
    (2, slice(1, 3), slice(None)),
    (slice(None, None, -1), slice(None), slice(None, None, -2)),
])
def test_slicing_equals_highdicom(key):
    vol = oblique_volume(2)
    ours = vol[key]
    theirs = to_hd(vol)[tuple(slice(k, k + 1) if isinstance(k, int) else k for k in key)]
    assert_same_as_hd(ours, theirs)
    assert_voxels_in_place(vol, ours)
    assert ours.operations and ours.operations[-1].startswith("index [")


def test_crop_position_equals_highdicom():
    vol = oblique_volume(3)
    ours = vol.crop((1, 2, 3), (6, 5, 5))
    assert ours.shape_xyz == (5, 3, 2)
    assert_same_as_hd(ours, to_hd(vol)[3:5, 2:5, 1:6])
    assert_voxels_in_place(vol, ours)


@pytest.mark.parametrize("axes", ["x", "y", "z", ("x", "z"), (0, 1, 2)])
def test_flip_equals_highdicom(axes):
    vol = oblique_volume(4)
    ours = vol.flip(axes)
    names = [axes] if isinstance(axes, str) else list(axes)
    hd_axes = [2 - ("xyz".index(a) if isinstance(a, str) else a) for a in names]
    assert_same_as_hd(ours, to_hd(vol).flip_spatial(hd_axes))
    assert_voxels_in_place(vol, ours)


def test_pad_equals_highdicom():
    vol = oblique_volume(5)
    ours = vol.pad(((1, 2), (0, 3), (2, 1)), value=-5)
    theirs = to_hd(vol).pad([[2, 1], [0, 3], [1, 2]], constant_value=-5)  # (z, y, x)
    assert_same_as_hd(ours, theirs)
    assert_voxels_in_place(ours, vol)
    assert ours.pad(1).shape_xyz == (ours.shape_xyz[0] + 2, ours.shape_xyz[1] + 2,
                                     ours.shape_xyz[2] + 2)
    with pytest.raises(ValueError):
        vol.pad(-1)


@pytest.mark.parametrize("code", ["LPS", "RAS", "SPL", "IAR", "LHP"])
@pytest.mark.parametrize("seed", [0, 6])
def test_to_orientation_equals_highdicom(code, seed):
    vol = oblique_volume(seed)
    ours = vol.to_orientation(code)
    assert axis_codes(ours.affine) == normalise_codes(code)
    hd_code = normalise_codes(code)[::-1].replace("I", "F").replace("S", "H")
    assert_same_as_hd(ours, to_hd(vol).to_patient_orientation(hd_code))
    assert_voxels_in_place(vol, ours)


def test_orientation_of_standard_planes():
    assert oblique_volume(0).to_orientation("LPS").orientation == "LPS"
    sag = Volume(np.zeros((2, 2, 2)), np.array(
        [[0, 0, -1, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float))
    assert sag.orientation == "PIR"  # sagittal: columns run P, rows run down (I), slices R
    with pytest.raises(ValueError, match="three letters"):
        sag.to_orientation("LLS")


def test_to_nibabel_equals_loading_the_written_nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = oblique_volume(7)
    path = vol.save(tmp_path / "v.nii.gz")
    loaded = nib.load(path)
    ours = vol.to_nibabel()
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(loaded.dataobj))
    np.testing.assert_allclose(ours.affine, loaded.affine, atol=1e-5)
    back = Volume.from_nibabel(ours)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)


@pytest.mark.parametrize("ext", ["nii", "nii.gz", "nrrd", "mha"])
def test_save_load_round_trip(tmp_path, ext):
    vol = oblique_volume(8)[1:5]
    path = vol.save(tmp_path / f"v.{ext}")
    back = Volume.load(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    assert back.metadata["sidecar"]["operations"] == list(vol.operations)
    assert back.operations == vol.operations and len(vol.operations) == 1
    assert back.metadata["sidecar"]["volume"]["shape_xyz"] == list(vol.shape_xyz)


def test_rgb_to_nibabel_and_back():
    rgb = np.random.default_rng(0).integers(0, 255, size=(3, 4, 5, 3)).astype(np.uint8)
    vol = Volume(rgb, np.eye(4), {"rgb": True})
    back = Volume.from_nibabel(vol.to_nibabel())
    assert back.is_rgb
    np.testing.assert_array_equal(back.array, rgb)


def test_resample_like_and_geometry_equal():
    vol = oblique_volume(9, dtype=np.float32)
    sub = vol[1:4, 2:6, 3:7]
    assert not vol.geometry_equal(sub) and sub.geometry_equal(sub.to_sitk())
    onto = vol.resample_like(sub)  # a grid of whole voxels of vol: SimpleITK returns them
    assert onto.geometry_equal(sub)
    np.testing.assert_allclose(onto.array, sub.array, atol=1e-3)
    nearest = vol.resample_like(vol.flip("y"), interpolation="nearest")
    np.testing.assert_array_equal(nearest.array, vol.array[:, ::-1, :])


def test_repr_is_short():
    text = repr(oblique_volume(0, shape_zyx=(300, 256, 256)))
    assert len(text) < 200 and "256x256x300 int16" in text and text.startswith("Volume(")


def test_repr_and_to_dicom_of_a_converted_volume(corpus, tmp_path):
    import dicomrecon
    vol = dicomrecon.read_volume(corpus / "d2n_mr_hitachi_oblique39")
    assert len(repr(vol)) < 200 and "stack" in repr(vol)
    result = vol[:, :, 10:50].to_dicom(tmp_path / "dcm")
    back = dicomrecon.read_volume(tmp_path / "dcm")
    assert back.geometry_equal(vol[:, :, 10:50], atol=1e-3)
    np.testing.assert_array_equal(back.array, vol.array[:, :, 10:50])
    assert result.series_instance_uid


def test_public_api_is_discoverable():
    import subprocess
    import sys
    code = ("import dicomrecon; d = dir(dicomrecon); "
            "assert {'read_volume', 'Volume', 'errors', 'export'} <= set(d), d; "
            "assert dicomrecon.errors.ExitCode.PARTIAL == 4; "
            "assert callable(dicomrecon.export.export_series); "
            "assert dicomrecon.Volume.__doc__ and 'x = column' in dicomrecon.volume.__doc__")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_highdicom_pair():
    vol = oblique_volume(11)
    theirs = vol.to_highdicom()
    assert_same_as_hd(vol, theirs)
    pts = vol.world([[1, 2, 3]])
    np.testing.assert_array_equal(theirs.map_reference_to_indices(pts, round_output=True),
                                  [[3, 2, 1]])  # (slice, row, column)
    back = Volume.from_highdicom(theirs.to_patient_orientation("FPL"))
    assert back.orientation == "LPI"  # highdicom's F (feet) is our I
    assert_voxels_in_place(vol, back)
