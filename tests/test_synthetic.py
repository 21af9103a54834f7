"""End to end on synthetic series with exact geometry.

Every source pixel holds ``phantom(world position)``; a correct volume therefore holds, at each
voxel, the phantom at that voxel's world position (affine @ index).  A wrong sort, flip,
transpose, spacing or origin changes the values and fails these tests.
"""

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

import dicomrecon
from dicomrecon.affines import apply_affine
from dicomrecon.errors import AmbiguousInputError, RefusedError
from dicomrecon.synthetic import SeriesSpec, expected_values, write_series

C, S = np.cos(np.radians(20)), np.sin(np.radians(20))
C2, S2 = np.cos(np.radians(35)), np.sin(np.radians(35))
# double oblique: rotate axial about x by 20 deg, then about z by 35 deg
ROT = np.array([[C2, -S2, 0], [S2, C2, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, C, -S], [0, S, C]])
DOUBLE_OBLIQUE = tuple(ROT[:, 0]) + tuple(ROT[:, 1])

ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "coronal": (1, 0, 0, 0, 0, -1),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "double_oblique": DOUBLE_OBLIQUE,
}


def world_grid(vol):
    nz, ny, nx = vol.array.shape
    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1)
    # (nx, ny, nz, 3) -> (nz, ny, nx, 3) to line up with the array
    return apply_affine(vol.affine, idx.transpose(2, 1, 0, 3).astype(float))


def assert_matches_phantom(vol, spec, atol=0.0):
    expected = expected_values(spec, world_grid(vol))
    np.testing.assert_allclose(vol.array.astype(float), expected, atol=atol, rtol=0)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_orientations_place_every_voxel(tmp_path, name):
    spec = SeriesSpec(iop=ORIENTATIONS[name], n_slices=7, origin=(12.5, -30.25, 40.0))
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert vol.array.shape == (7, spec.rows, spec.columns)
    assert_matches_phantom(vol, spec)
    # the slice axis is the normal, ascending; x along the row cosine, y along the column cosine
    row, col, normal = spec.orientation()
    assert np.allclose(vol.direction, np.column_stack([row, col, normal]), atol=1e-6)
    assert np.allclose(vol.spacing, [0.6, 0.8, 2.0])


@pytest.mark.parametrize("kw", [
    dict(shuffle_names=True),
    dict(reverse_instance_numbers=True),
    dict(shuffle_names=True, reverse_instance_numbers=True, slice_step=-1.5),
])
def test_order_never_comes_from_names_or_instance_numbers(tmp_path, kw):
    spec = SeriesSpec(**kw)
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert_matches_phantom(vol, spec)
    assert vol.affine[2, 2] > 0  # ascending along the normal even when written descending


@pytest.mark.parametrize("dtype, intercept, expect", [
    ("int16", -1024, np.int16),     # CT in HU, exact
    ("uint16", -1024, np.int16),    # unsigned stored, signed HU: still 2 bytes, exact
    ("uint16", 0, np.uint16),
    ("uint8", 0, np.uint8),
])
def test_integer_types_stay_exact(tmp_path, dtype, intercept, expect):
    spec = SeriesSpec(dtype=dtype, intercepts=[intercept] * 10, slopes=[1] * 10,
                      phantom=lambda p: np.abs(p[..., 0]) + np.abs(p[..., 1]) + p[..., 2])
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert vol.array.dtype == expect
    assert_matches_phantom(vol, spec)


def test_ct_values_are_hounsfield(tmp_path):
    spec = SeriesSpec(modality="CT", phantom=lambda p: np.where(p[..., 0] > -5, -1000.0, 40.0))
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert set(np.unique(vol.array)) == {-1000, 40}
    assert vol.metadata["values"]["units"] == "HU"


def test_per_slice_rescale_gives_float32_with_each_slices_own(tmp_path):
    slopes = [0.5 + 0.25 * i for i in range(10)]
    intercepts = [-10.0 * i for i in range(10)]
    spec = SeriesSpec(modality="MR", slopes=slopes, intercepts=intercepts)
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert vol.array.dtype == np.float32
    world = world_grid(vol)
    for k in range(10):  # each slice quantised with its own slope
        v = spec.phantom(world[k])
        expected = np.rint((v - intercepts[k]) / slopes[k]) * slopes[k] + intercepts[k]
        np.testing.assert_allclose(vol.array[k], expected, atol=1e-3)


def test_shared_non_integer_slope_gives_float32(tmp_path):
    spec = SeriesSpec(modality="MR", slopes=[0.25] * 10, intercepts=[1.5] * 10)
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert vol.array.dtype == np.float32
    assert_matches_phantom(vol, spec, atol=1e-3)


def test_monochrome1_is_not_inverted_and_is_recorded(tmp_path):
    spec = SeriesSpec(modality="MR", photometric="MONOCHROME1", dtype="uint16")
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    assert_matches_phantom(vol, spec)
    assert vol.metadata["values"]["photometric_interpretation"] == "MONOCHROME1"
    assert any("NOT inverted" in p for p in vol.metadata["processing"])


@pytest.mark.parametrize("ts", [RLELossless, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_transfer_syntaxes(tmp_path, ts):
    spec = SeriesSpec(transfer_syntax=ts, modality="MR", dtype="int16")
    write_series(spec, tmp_path)
    g = dicomrecon.scan(tmp_path).groups[0]
    assert g.first.transfer_syntax == ts
    vol = dicomrecon.read_volume(g)
    assert_matches_phantom(vol, spec)


def test_signed_12_bit_with_garbage_high_bits_is_sign_extended(tmp_path):
    spec = SeriesSpec(modality="MR", dtype="int16", bits_stored=12,
                      phantom=lambda p: p[..., 0] * 20 - 100)
    paths = write_series(spec, tmp_path)
    import pydicom
    for p in paths:  # set bits 12-15 to garbage the way old scanners did: 0 for negatives
        ds = pydicom.dcmread(p)
        a = np.frombuffer(ds.PixelData, "<i2").copy().view("<u2")
        a &= 0x0FFF
        ds.PixelData = a.tobytes()
        ds.save_as(p)
    vol = dicomrecon.read_volume(tmp_path)
    assert vol.array.min() < 0
    assert_matches_phantom(vol, spec)


@pytest.mark.parametrize("name", ["axial", "double_oblique"])
def test_same_image_as_simpleitk_series_reader(tmp_path, name):
    """An independent reader: SimpleITK on a correctly sorted, untilted series."""
    spec = SeriesSpec(iop=ORIENTATIONS[name], shuffle_names=True)
    write_series(spec, tmp_path)
    ours = dicomrecon.read(tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    ref = reader.Execute()
    assert ours.GetSize() == ref.GetSize()
    assert np.allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert np.allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-4)
    assert np.allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(ref))


def test_volume_sitk_round_trip_keeps_geometry(tmp_path):
    spec = SeriesSpec(iop=DOUBLE_OBLIQUE)
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    back = dicomrecon.Volume.from_sitk(vol.to_sitk())
    assert np.allclose(back.affine, vol.affine)
    assert np.array_equal(back.array, vol.array)


def test_tilted_series_is_refused_on_request_never_stacked(tmp_path):
    write_series(SeriesSpec(tilt_deg=15, gantry_tilt_tag=15), tmp_path)
    with pytest.raises(RefusedError, match="gantry tilt of 15 deg"):
        dicomrecon.read_volume(tmp_path, policy=dicomrecon.Policy(tilt="refuse"))


def test_missing_slice_is_refused_on_request_with_the_count(tmp_path):
    spec = SeriesSpec(n_slices=8)
    spec.positions = np.delete(spec.ipps(), 3, axis=0)
    write_series(spec, tmp_path)
    with pytest.raises(RefusedError, match="1 missing slice"):
        dicomrecon.read_volume(tmp_path, policy=dicomrecon.Policy(irregular="refuse"))


def test_two_series_in_one_folder_must_be_chosen(tmp_path):
    a = SeriesSpec(series_number=1, series_description="one")
    b = SeriesSpec(series_number=2, series_description="two", iop=ORIENTATIONS["sagittal"])
    write_series(a, tmp_path / "a")
    write_series(b, tmp_path / "b")
    with pytest.raises(AmbiguousInputError, match="contains 2 volumes"):
        dicomrecon.read(tmp_path)
    result = dicomrecon.scan(tmp_path)
    assert [s.number for s in result.series] == [1, 2]
    vol = dicomrecon.read_volume(tmp_path, series_uid=b.series_uid)
    assert_matches_phantom(vol, b)


def test_itk_conversion(tmp_path):
    itk = pytest.importorskip("itk")
    spec = SeriesSpec(iop=DOUBLE_OBLIQUE)
    write_series(spec, tmp_path)
    vol = dicomrecon.read_volume(tmp_path)
    img = vol.to_itk()
    assert np.allclose(np.asarray(img.GetOrigin()), vol.origin)
    assert np.allclose(itk.array_from_matrix(img.GetDirection()), vol.direction)
    back = dicomrecon.Volume.from_itk(img)
    assert np.allclose(back.affine, vol.affine) and np.array_equal(back.array, vol.array)
