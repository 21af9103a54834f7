"""Gantry tilt, irregular spacing, missing slices, duplicates: exact ground truth.

An analytic phantom is sampled at each source pixel's world position; the output is compared
with the phantom at each output voxel's world position.  Pass (issue 3): RMSE under 1 % of
the value range, and no slab displaced by more than 0.5 mm.  Displacement is measured with
linear ramps: interpolation reproduces a ramp exactly, so any error / gradient is a shift.
"""

import json
import os

import numpy as np
import pytest

import dicomrecon
from dicomrecon import geometry as geo
from dicomrecon.affines import LPS_TO_RAS, apply_affine
from dicomrecon.plan import Policy
from dicomrecon.resample import resample, slice_spacing, target_grid
from dicomrecon.synthetic import SeriesSpec, write_series


def smooth_phantom(p):
    """Values 100..1900, smooth on the scale of the pixels (so interpolation error is small)."""
    return (1000 + 500 * np.sin(p[..., 0] / 9.0) * np.cos(p[..., 1] / 11.0)
            + 400 * np.sin(p[..., 2] / 7.0))


def ramp(axis, gradient=10.0):
    return lambda p: 2000.0 + gradient * p[..., axis]


c10, s10 = np.cos(np.radians(10)), np.sin(np.radians(10))
ROTATED = (c10, s10, 0.0, -s10, c10, 0.0)

CASES = {
    "tilt+15": dict(tilt_deg=15),
    "tilt-20": dict(tilt_deg=-20),
    "tilt+15_descending": dict(tilt_deg=15, slice_step=-2.0, reverse_instance_numbers=True),
    "tilt+15_inplane_rot10": dict(tilt_deg=15, iop=ROTATED),
}


def base(**kw):
    d = dict(rows=48, columns=40, n_slices=16, pixel_spacing=(0.8, 0.7), slice_step=2.0,
             modality="MR", dtype="int16", origin=(-14.0, -16.0, 10.0))
    d.update(kw)
    return SeriesSpec(**d)


def voxel_world(vol):
    nz, ny, nx = vol.array.shape
    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1)
    return apply_affine(vol.affine, idx.transpose(2, 1, 0, 3).astype(float))


def covered(spec, world):
    """Voxels whose in-plane position lies inside every source slice (computed from world)."""
    row, col, normal = spec.orientation()
    ok = np.ones(world.shape[:-1], bool)
    for ipp in spec.ipps():
        rel = world - ipp
        c = rel @ row / spec.pixel_spacing[1]
        r = rel @ col / spec.pixel_spacing[0]
        ok &= (c >= 0) & (c <= spec.columns - 1) & (r >= 0) & (r <= spec.rows - 1)
    return ok


def convert_spec(spec, tmp_path, policy=None):
    write_series(spec, tmp_path / "in")
    vol = dicomrecon.read_volume(tmp_path / "in", policy=policy)
    world = voxel_world(vol)
    return vol, world, covered(spec, world)


def assert_orthogonal_along_normal(vol, spec):
    row, col, normal = spec.orientation()
    d = vol.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-9)
    assert np.allclose(d[:, 2], normal, atol=1e-9)
    assert np.allclose(d[:, 0], row, atol=1e-9) and np.allclose(d[:, 1], col, atol=1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_tilt_cases_meet_rmse_target(tmp_path, case):
    spec = base(phantom=smooth_phantom, **CASES[case])
    vol, world, inside = convert_spec(spec, tmp_path)
    assert vol.metadata["plan"].kind == "resample"
    assert_orthogonal_along_normal(vol, spec)
    assert inside.mean() > 0.4  # the test compares a substantial part of the volume
    err = vol.array[inside].astype(float) - smooth_phantom(world[inside])
    rmse = np.sqrt(np.mean(err ** 2))
    assert rmse < 0.01 * 1800, rmse


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tilt_cases_displace_no_slab(tmp_path, case, axis):
    spec = base(phantom=ramp(axis), **CASES[case])
    vol, world, inside = convert_spec(spec, tmp_path)
    err = np.abs(vol.array.astype(float) - ramp(axis)(world)) / 10.0  # mm along that axis
    per_slab = [err[k][inside[k]].max() for k in range(len(err)) if inside[k].any()]
    assert max(per_slab) < 0.5
    # in fact only rounding: source and output are int16, each off by <= 0.5 = 0.05 mm here
    assert max(per_slab) <= 0.1 + 1e-6


def test_stacking_a_tilted_series_would_fail_these_checks(tmp_path):
    """The test can fail: the same series stacked as if orthogonal is displaced by mm."""
    spec = base(phantom=ramp(1), tilt_deg=15)
    write_series(spec, tmp_path / "in")
    g = dicomrecon.scan(tmp_path / "in").groups[0]
    naive = geo.lps_affine(g.geometry.orientation, spec.pixel_spacing, 2.0, g.geometry.ipp_sorted[0])
    from dicomrecon.decode import decode
    arr, _, _ = decode(g.slices)
    nz, ny, nx = arr.shape
    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1)
    world = apply_affine(naive, idx.transpose(2, 1, 0, 3).astype(float))
    shift = np.abs(arr - ramp(1)(world)) / 10.0
    assert shift[-1].max() > 5  # the last slab is ~8 mm off: exactly what we must not write


def test_preserve_writes_the_exact_sheared_grid(tmp_path):
    import nibabel as nib
    spec = base(phantom=smooth_phantom, tilt_deg=15)
    write_series(spec, tmp_path / "in")
    r = dicomrecon.convert(tmp_path / "in", tmp_path / "o", fmt="nii",
                           policy=Policy(tilt="preserve"))
    assert len(r.outputs) == 1
    img = nib.load(r.outputs[0].path)
    assert img.header["qform_code"] == 0 and img.header["sform_code"] == 1
    lps = LPS_TO_RAS @ img.header.get_sform()
    data = np.asarray(img.dataobj).transpose(2, 1, 0)  # back to (z, y, x)
    for z, ipp in enumerate(spec.ipps()):  # every voxel sits on its source pixel
        world = apply_affine(lps, np.array([[0, 0, z], [spec.columns - 1, spec.rows - 1, z]], float))
        assert np.allclose(world, spec.world_of_pixels(ipp)[[0, -1], [0, -1]], atol=1e-3)
        np.testing.assert_allclose(data[z], np.rint(smooth_phantom(spec.world_of_pixels(ipp))))
    side = json.loads(open(r.outputs[0].sidecar).read())
    assert side["reconstruction"] == "sheared" and side["policy"]["tilt"] == "preserve"


def test_preserve_is_refused_for_mha_with_a_reason(tmp_path):
    write_series(base(tilt_deg=15), tmp_path / "in")
    r = dicomrecon.convert(tmp_path / "in", tmp_path / "o", fmt="mha",
                           policy=Policy(tilt="preserve"))
    assert not r.outputs
    assert "MetaImage (.mha) cannot hold" in r.refused[0].reasons[0]["message"]


def test_one_missing_slice(tmp_path):
    spec = base(phantom=smooth_phantom)
    spec.positions = np.delete(spec.ipps(), 7, axis=0)
    vol, world, inside = convert_spec(spec, tmp_path)
    assert vol.array.shape[0] == 16 and inside.all()
    err = vol.array.astype(float) - smooth_phantom(world)
    assert np.sqrt(np.mean(err ** 2)) < 18
    codes = {f.code for f in vol.metadata["plan"].findings}
    assert "INTERPOLATED_MISSING" in codes
    # the interpolated slice 7 is a blend of source slices 6 and 7 (the old 8), weights 1/2
    src = vol.metadata["resample"]["output_slices"][7]["sources"]
    assert [s["weight"] for s in src] == [0.5, 0.5]


def test_two_spacing_blocks(tmp_path):
    spec = base(phantom=smooth_phantom)
    z = np.concatenate([np.arange(0, 10) * 1.0, 9.0 + np.arange(1, 9) * 2.5])
    spec.positions = np.array(spec.origin) + z[:, None] * np.array([0, 0, 1.0])
    vol, world, inside = convert_spec(spec, tmp_path, policy=Policy(spacing="min"))
    assert np.isclose(vol.spacing[2], 1.0)
    assert np.isclose(vol.array.shape[0], 30)  # 0..29 mm at 1 mm
    err = vol.array.astype(float) - smooth_phantom(world)
    assert np.sqrt(np.mean(err ** 2)) < 18
    # split instead: two regular volumes, each exactly its source slices
    vols = dicomrecon.read_volumes(tmp_path / "in", policy=Policy(irregular="split"))
    assert sorted(v.array.shape[0] for v in vols) == [8, 10]
    for v in vols:
        assert v.metadata["plan"].kind == "stack"
        assert np.allclose(v.array, np.rint(smooth_phantom(voxel_world(v))))


def test_jitter_of_0_2_percent_is_regular_and_silent(tmp_path):
    spec = base()
    rng = np.random.default_rng(3)
    spec.positions = spec.ipps() + np.outer(rng.uniform(-0.004, 0.004, 16), [0, 0, 1])
    vol, world, _ = convert_spec(spec, tmp_path)
    assert vol.metadata["plan"].kind == "stack"
    g = vol.metadata["plan"].group
    assert [f for f in g.findings if f.severity != geo.INFO] == []


def test_same_position_different_content_is_two_volumes_never_averaged(tmp_path):
    spec = base(phantom=smooth_phantom)
    write_series(spec, tmp_path / "in" / "a")
    other = base(phantom=lambda p: 3000.0 + 0 * p[..., 0], series_uid=spec.series_uid,
                 positions=spec.ipps()[5:6], instance_offset=100)
    write_series(other, tmp_path / "in" / "b")
    result = dicomrecon.scan(tmp_path / "in")
    assert [len(g.slices) for g in result.groups] == [16, 1]
    vols = dicomrecon.read_volumes(result)
    big = vols[0]
    assert np.allclose(big.array, np.rint(smooth_phantom(voxel_world(big))))  # no 3000 mixed in
    assert np.all(vols[1].array == 3000)
    assert result.groups[1].split_keys == {"repeat": 2}


def test_identical_duplicate_is_dropped_and_listed(tmp_path):
    """Issue 8: only an exact copy (same SOPInstanceUID, header keys and pixels) is dropped;
    the same pixels under a new SOPInstanceUID are another image, kept as a repeat."""
    import shutil
    import pydicom
    from pydicom.uid import generate_uid
    spec = base()
    paths = write_series(spec, tmp_path / "in")
    shutil.copy(paths[3], tmp_path / "in" / "copy.dcm")
    result = dicomrecon.scan(tmp_path / "in")
    assert len(result.groups) == 1 and len(result.groups[0].slices) == 16
    assert [(os.path.basename(p), "an exact copy" in why) for p, why in result.skipped] == [
        ("slice_0003.dcm", True)]  # the first path in sorted order is kept
    ds = pydicom.dcmread(paths[3])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "in" / "copy.dcm")
    result = dicomrecon.scan(tmp_path / "in")
    assert [len(g.slices) for g in result.groups] == [16, 1] and not result.skipped
    assert "PARTIAL_VOLUME" in {f.code for f in result.groups[1].findings}
    shutil.rmtree(tmp_path / "in")


def test_nearest_keeps_labels(tmp_path):
    # labels 0, 40, ..., 200 in 4 mm bands along y (the direction of the tilt's in-plane shift)
    labels = lambda p: 40.0 * (np.floor(p[..., 1] / 4) % 3 + 3 * (np.floor(p[..., 0] / 6) % 2))
    spec = base(phantom=labels, tilt_deg=15, dtype="uint8")
    write_series(spec, tmp_path / "in")
    vol = dicomrecon.read_volume(tmp_path / "in", policy=Policy(interpolation="nearest"))
    assert set(np.unique(vol.array)) <= {0, 40, 80, 120, 160, 200}
    lin = dicomrecon.read_volume(tmp_path / "in")
    assert not set(np.unique(lin.array)) <= {0, 40, 80, 120, 160, 200}  # linear blends


def test_fill_value_is_pixel_padding_value_and_recorded(tmp_path):
    spec = base(tilt_deg=15, modality="CT", pixel_padding_value=-2000,
                phantom=lambda p: 50 + 0 * p[..., 0])
    write_series(spec, tmp_path / "in")
    r = dicomrecon.convert(tmp_path / "in", tmp_path / "o", fmt="nii")
    side = json.loads(open(r.outputs[0].sidecar).read())
    fill = side["resample"]["fill"]
    assert fill["value"] == -2000 - 1024 and fill["source"].startswith("PixelPaddingValue")
    import nibabel as nib
    data = np.asarray(nib.load(r.outputs[0].path).dataobj)
    assert set(np.unique(data)) == {-3024, 50}
    assert fill["voxels"] == int(np.count_nonzero(data == -3024)) > 0
    assert side["resample"]["tilt_deg_from_positions"] == pytest.approx(15, abs=1e-3)
    assert side["resample"]["spacing_before_mm"]["median"] == pytest.approx(2.0)


def test_gap_wider_than_max_gap_is_split_not_filled(tmp_path):
    spec = base()
    z = np.concatenate([np.arange(8) * 2.0, 14.0 + 20.0 + np.arange(8) * 2.0])
    spec.positions = np.array(spec.origin) + z[:, None] * np.array([0, 0, 1.0])
    write_series(spec, tmp_path / "in")
    gp = dicomrecon.plan.plan_group(dicomrecon.scan(tmp_path / "in").groups[0])
    assert [len(v.slices) for v in gp.volumes] == [8, 8]
    assert "SPLIT_AT_GAP" in {f.code for f in gp.volumes[0].findings}
    assert all(v.kind == "stack" for v in gp.volumes)


def test_sidecar_lists_sources_and_weights(tmp_path):
    spec = base(tilt_deg=15)
    write_series(spec, tmp_path / "in")
    r = dicomrecon.convert(tmp_path / "in", tmp_path / "o", policy=Policy(spacing=1.0))
    side = json.loads(open(r.outputs[0].sidecar).read())
    uids = [s["sop_instance_uid"] for s in side["source_slices"]]
    assert len(side["slices"]) == 31
    for k, entry in enumerate(side["slices"]):
        weights = [s["weight"] for s in entry["sources"]]
        assert abs(sum(weights) - 1) < 1e-6
        assert all(s["sop_instance_uid"] in uids for s in entry["sources"])
    assert [s["weight"] for s in side["slices"][1]["sources"]] == [0.5, 0.5]
    assert side["resample"]["spacing_after_mm"] == 1.0


def test_spacing_rules():
    pos = np.array([0, 1, 2, 4.5, 7, 9.5])
    assert slice_spacing(pos, "median") == 2.5  # steps 1, 1, 2.5, 2.5, 2.5
    assert slice_spacing(pos, "min") == 1.0
    assert slice_spacing(pos, 0.5) == 0.5
    with pytest.raises(ValueError):
        slice_spacing(pos, "mean")


def test_resampler_on_literal_arrays():
    """Pure numpy: a 2-slice stack shifted by half a pixel along x."""
    o, _ = geo.check_orientation([1, 0, 0, 0, 1, 0])
    src = np.array([[[0, 10, 20, 30]], [[0, 10, 20, 30]]], dtype=np.float32)
    ipp = np.array([[0, 0, 0], [0.5, 0, 1.0]])
    grid = target_grid(o, [1, 1], ipp, (1, 4))
    assert grid.shape_zyx == (2, 1, 5) and np.allclose(grid.affine[:3, 3], [0, 0, 0])
    res = resample(src, grid, fill=-1)
    assert np.allclose(res.array[0], [0, 10, 20, 30, -1])
    assert np.allclose(res.array[1], [-1, 5, 15, 25, -1])  # slice 1 starts half a pixel later
