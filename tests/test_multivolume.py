"""Every volume in a folder: series, localizers, echoes, time points, enhanced multi-frame, RGB,
images without geometry, partial repeats, MOSAIC.  Synthetic, exact ground truth."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import dicomrecon
from dicomrecon.affines import LPS_TO_RAS, apply_affine
from dicomrecon.conversion import convert
from dicomrecon.plan import Policy
from dicomrecon.synthetic import SeriesSpec, expected_values, write_enhanced, write_series


def world_of(vol):
    nz, ny, nx = vol.array.shape[:3]
    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1)
    return apply_affine(vol.affine, idx.transpose(2, 1, 0, 3).astype(float))


def sidecars(folder):
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")
            if p.name != "dicomrecon-report.json"}


def test_two_series_in_one_folder_both_convert(tmp_path):
    a = SeriesSpec(series_number=1, series_description="ax")
    b = SeriesSpec(series_number=2, series_description="sag", iop=(0, 1, 0, 0, 0, -1),
                   shuffle_names=True)
    write_series(a, tmp_path / "in" / "x")
    write_series(b, tmp_path / "in" / "x")  # same folder, names interleaved
    assert len(list((tmp_path / "in" / "x").iterdir())) == 20
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii")
    assert sorted(o.group for o in r.outputs) == ["1.1", "2.1"]
    for o, spec in zip(sorted(r.outputs, key=lambda o: o.group), (a, b)):
        vol = dicomrecon.Volume.from_sitk(sitk.ReadImage(o.path))
        assert np.array_equal(vol.array, expected_values(spec, world_of(vol)))
    only = convert(tmp_path / "in", tmp_path / "o2", series_uid=b.series_uid)
    assert [o.group for o in only.outputs] == ["2.1"]


def test_three_localizers_sharing_the_uid_of_an_axial_stack(tmp_path):
    stack = SeriesSpec(series_number=2, n_slices=12)
    write_series(stack, tmp_path / "in")
    loc = dict(series_uid=stack.series_uid, series_number=2, n_slices=1,
               extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    # an axial localizer with the stack's matrix and orientation, between two stack slices
    write_series(SeriesSpec(**loc, origin=(-10, -20, 33.0)), tmp_path / "in" / "l1")
    write_series(SeriesSpec(**loc, iop=(0, 1, 0, 0, 0, -1)), tmp_path / "in" / "l2")
    write_series(SeriesSpec(**loc, iop=(1, 0, 0, 0, 0, -1)), tmp_path / "in" / "l3")
    result = dicomrecon.scan(tmp_path / "in")
    sizes = sorted(len(g.slices) for g in result.groups)
    assert sizes == [1, 1, 1, 12]
    main = next(g for g in result.groups if len(g.slices) == 12)
    assert main.geometry.spacing.regular  # the axial localizer did not land in the stack
    locs = [g for g in result.groups if len(g.slices) == 1]
    assert all("LOCALIZER" in g.split_keys.get("ImageType", "") for g in locs)
    vol = dicomrecon.read_volume(main)
    assert np.array_equal(vol.array, expected_values(stack, world_of(vol)))


def echo_series(tmp_path, key, values, n_slices=8, **kw):
    uid = SeriesSpec().series_uid
    specs = []
    for i, v in enumerate(values):
        spec = SeriesSpec(series_uid=uid, n_slices=n_slices, modality="MR",
                          phantom=lambda p, i=i: 100.0 * (i + 1) + p[..., 2],
                          extra_tags={key: v, **kw}, instance_offset=100 * i)
        write_series(spec, tmp_path / "in" / f"v{i}")
        specs.append(spec)
    return specs


def test_two_echoes_at_the_same_positions(tmp_path):
    specs = echo_series(tmp_path, "EchoNumbers", [1, 2])
    result = dicomrecon.scan(tmp_path / "in")
    assert [g.split_keys for g in result.groups] == [{"EchoNumbers": "1"}, {"EchoNumbers": "2"}]
    vols = dicomrecon.read_volumes(result)
    for vol, spec in zip(vols, specs):
        assert np.array_equal(vol.array, expected_values(spec, world_of(vol)))  # never mixed
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii", policy=Policy(merge_4d=True))
    assert len(r.outputs) == 1
    img = nib.load(r.outputs[0].path)
    assert img.shape == (12, 16, 8, 2)
    data = np.asarray(img.dataobj)
    for t, (vol, spec) in enumerate(zip(vols, specs)):
        assert np.array_equal(data[..., t], vol.array.transpose(2, 1, 0))
    assert np.allclose(img.affine, LPS_TO_RAS @ vols[0].affine)
    side = json.loads(open(r.outputs[0].sidecar).read())
    assert side["fourth_axis"]["key"] == "EchoNumbers"
    assert side["fourth_axis"]["values"] == ["1", "2"]
    assert len(side["volumes"]) == 2 and len(side["volumes"][1]["slices"]) == 8


def test_three_time_points_and_a_partial_fourth(tmp_path):
    specs = echo_series(tmp_path, "TemporalPositionIdentifier", [1, 2, 3])
    partial = SeriesSpec(series_uid=specs[0].series_uid, n_slices=5, modality="MR",
                         extra_tags={"TemporalPositionIdentifier": 4}, instance_offset=400)
    write_series(partial, tmp_path / "in" / "v3")
    result = dicomrecon.scan(tmp_path / "in")
    assert [len(g.slices) for g in result.groups] == [8, 8, 8, 5]
    last = result.groups[3]
    assert "PARTIAL_VOLUME" in {f.code for f in last.findings}
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii.gz", policy=Policy(merge_4d=True))
    shapes = sorted(o.shape_xyz for o in r.outputs)
    assert shapes == [(12, 16, 5), (12, 16, 8, 3)]  # complete ones in 4D, the partial alone
    side = sidecars(tmp_path / "o")
    partial_side = next(s for s in side.values() if "volumes" not in s)
    assert "PARTIAL_VOLUME" in {f["code"] for f in partial_side["findings"]}


def test_4d_needs_nifti(tmp_path):
    echo_series(tmp_path, "EchoNumbers", [1, 2])
    with pytest.raises(ValueError, match="NIfTI"):
        convert(tmp_path / "in", tmp_path / "o", fmt="nrrd", policy=Policy(merge_4d=True))


def test_enhanced_ct_with_per_frame_rescale_in_shuffled_frame_order(tmp_path):
    slopes = [1.0 + 0.25 * i for i in range(10)]
    spec = SeriesSpec(slopes=slopes, intercepts=[-1024.0] * 10, iop=(1, 0, 0, 0, 0.8, -0.6))
    write_enhanced(spec, str(tmp_path / "in" / "enh.dcm"), frame_order=[3, 1, 0, 2, 9, 8, 4, 5, 7, 6])
    vol = dicomrecon.read_volume(tmp_path / "in")
    assert vol.array.dtype == np.float32 and vol.array.shape == (10, 16, 12)
    world = world_of(vol)
    for k in range(10):
        v = spec.phantom(world[k])
        expected = np.rint((v + 1024) / slopes[k]) * slopes[k] - 1024
        np.testing.assert_allclose(vol.array[k], expected, atol=1e-3)
    side = convert(tmp_path / "in", tmp_path / "o").outputs[0].sidecar
    frames = [s["frame"] for s in json.loads(open(side).read())["slices"]]
    assert frames == [3, 2, 4, 1, 7, 8, 10, 9, 6, 5]  # 1-based frame of each output slice


def test_enhanced_tilted_frames_use_the_same_resampler(tmp_path):
    spec = SeriesSpec(tilt_deg=12, modality="MR", dtype="int16")
    write_enhanced(spec, str(tmp_path / "in" / "enh.dcm"))
    vol = dicomrecon.read_volume(tmp_path / "in")
    assert vol.metadata["plan"].kind == "resample"
    assert vol.metadata["resample"]["tilt_deg_from_positions"] == pytest.approx(12, abs=1e-3)


def test_rgb_image_with_geometry(tmp_path):
    spec = SeriesSpec(rgb=True, n_slices=3, modality="MR")
    write_series(spec, tmp_path / "in")
    vol = dicomrecon.read_volume(tmp_path / "in")
    assert vol.array.shape == (3, 16, 12, 3) and vol.is_rgb
    for k, ipp in enumerate(spec.ipps()):
        assert np.array_equal(vol.array[k], spec.rgb_slice(ipp))
    for fmt in ("nii", "nrrd", "mha"):
        r = convert(tmp_path / "in", tmp_path / f"o_{fmt}", fmt=fmt)
        img = sitk.ReadImage(r.outputs[0].path)
        assert img.GetNumberOfComponentsPerPixel() == 3
        assert np.array_equal(sitk.GetArrayFromImage(img), vol.array)
        assert np.allclose(img.GetOrigin(), spec.ipps()[0])


def test_image_without_geometry_needs_the_explicit_option(tmp_path):
    spec = SeriesSpec(rgb=True, n_slices=1, geometry=False, modality="OT")
    write_series(spec, tmp_path / "in")
    r = convert(tmp_path / "in", tmp_path / "o")
    assert not r.outputs
    assert r.refused[0].reasons[0]["code"] == "NO_GEOMETRY"
    r = convert(tmp_path / "in", tmp_path / "o2", policy=Policy(no_geometry=True))
    side = json.loads(open(r.outputs[0].sidecar).read())
    assert side["reconstruction"] == "placeholder"
    assert "NO_GEOMETRY_PLACEHOLDER" in {f["code"] for f in side["findings"]}
    assert side["geometry"] is None


def test_mosaic_without_csa_header_is_refused_with_reason(tmp_path):
    write_series(SeriesSpec(n_slices=1, modality="MR",
                            extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]}),
                 tmp_path / "in")
    r = convert(tmp_path / "in", tmp_path / "o")
    assert r.refused[0].reasons[0]["code"] == "MOSAIC_UNSUPPORTED"
    # a synthetic MOSAIC has no Siemens CSA header: it cannot be demosaiced, and says why
    assert "cannot be demosaiced" in r.refused[0].reasons[0]["message"]
    assert "NumberOfImagesInMosaic" in r.refused[0].reasons[0]["message"]


def test_magnitude_and_phase_split_by_image_type(tmp_path):
    uid = SeriesSpec().series_uid
    for i, kind in enumerate(["M", "P"]):
        write_series(SeriesSpec(series_uid=uid, modality="MR", instance_offset=50 * i,
                                phantom=lambda p, i=i: 10.0 + 1000 * i + p[..., 0],
                                extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", kind, "ND"]}),
                     tmp_path / "in" / kind)
    result = dicomrecon.scan(tmp_path / "in")
    assert [g.split_keys["ImageType"] for g in result.groups] == ["ORIGINAL\\M", "ORIGINAL\\P"]


def test_diffusion_b0_and_directions_make_one_4d(tmp_path):
    uid = SeriesSpec().series_uid
    acqs = [(0, None), (1000, [1.0, 0.0, 0.0]), (1000, [0.0, 1.0, 0.0])]
    for i, (b, g) in enumerate(acqs):
        tags = {"DiffusionBValue": b}
        if g is not None:
            tags["DiffusionGradientOrientation"] = g
        write_series(SeriesSpec(series_uid=uid, modality="MR", n_slices=6, extra_tags=tags,
                                instance_offset=10 * i,
                                phantom=lambda p, i=i: 100.0 * (i + 1) + p[..., 2]),
                     tmp_path / "in" / f"b{i}")
    result = dicomrecon.scan(tmp_path / "in")
    assert len(result.groups) == 3
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii", policy=Policy(merge_4d=True))
    assert [o.shape_xyz for o in r.outputs] == [(12, 16, 6, 3)]
    side = json.loads(open(r.outputs[0].sidecar).read())
    assert side["fourth_axis"]["key"] == ["DiffusionBValue", "DiffusionGradientOrientation"]
    values = side["fourth_axis"]["values"]
    assert [v["DiffusionBValue"] for v in values] == [0.0, 1000.0, 1000.0]
    data = np.asarray(nib.load(r.outputs[0].path).dataobj)
    assert [int(data[..., t].min() // 100) for t in range(3)] == [1, 2, 3]  # b0 first, in order


def test_multi_echo_time_series_gives_one_4d_per_echo(tmp_path):
    uid = SeriesSpec().series_uid
    for e in (1, 2):
        for t in (1, 2, 3):
            write_series(SeriesSpec(series_uid=uid, modality="MR", n_slices=5,
                                    instance_offset=100 * e + 10 * t,
                                    extra_tags={"EchoNumbers": e, "TemporalPositionIdentifier": t}),
                         tmp_path / "in" / f"e{e}t{t}")
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii", policy=Policy(merge_4d=True))
    assert sorted(o.shape_xyz for o in r.outputs) == [(12, 16, 5, 3), (12, 16, 5, 3)]
    for o in r.outputs:
        side = json.loads(open(o.sidecar).read())
        assert side["fourth_axis"]["key"] == "TemporalPositionIdentifier"
        assert len({str(v["EchoNumbers"]) for v in side["source"]["split_keys"]}) == 1


def test_tilted_rgb_is_resampled_per_channel_and_fill_counted_per_voxel(tmp_path):
    spec = SeriesSpec(rgb=True, tilt_deg=15, n_slices=6, modality="MR")
    write_series(spec, tmp_path / "in")
    r = convert(tmp_path / "in", tmp_path / "o", fmt="nii")
    side = json.loads(open(r.outputs[0].sidecar).read())
    assert side["reconstruction"] == "resample" and side["volume"]["components"] == 3
    fill = side["resample"]["fill"]
    nx, ny, nz = side["volume"]["shape_xyz"]
    assert fill["voxels"] > 0
    assert fill["fraction"] == pytest.approx(fill["voxels"] / (nx * ny * nz))
    data = np.asarray(nib.load(r.outputs[0].path).dataobj)
    black = (data["R"] == 0) & (data["G"] == 0) & (data["B"] == 0)
    assert int(black.sum()) == fill["voxels"]  # the phantom's B channel is never 0 inside
