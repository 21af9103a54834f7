"""Issue 8: one bad file never sinks a run; nothing non-finite or invented is written silently.

One test (or a few) per finding of the issue; each failed on 553b5bc.
"""

import json
import os
import shutil
import struct

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless, generate_uid
from typer.testing import CliRunner

import dicomrecon
from dicomrecon.cli import app
from dicomrecon.errors import RefusedError
from dicomrecon.plan import Policy
from dicomrecon.synthetic import SeriesSpec, write_series
from fuzzing import set_meta_transfer_syntax

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def report(out):
    return json.loads((out / "dicomrecon-report.json").read_text())


def retag(path, **tags):
    """Rewrite header values of one file."""
    ds = pydicom.dcmread(path)
    for kw, value in tags.items():
        setattr(ds, kw, value)
    ds.save_as(path, enforce_file_format=True)


def good_and_bad(tmp_path, n=6, **bad):
    good = write_series(SeriesSpec(n_slices=n, series_number=1, series_description="good"),
                        tmp_path / "in" / "good")
    bad = write_series(SeriesSpec(n_slices=n, series_number=2, series_description="bad", **bad),
                       tmp_path / "in" / "bad")
    return good, bad


def refusal_codes(rep):
    return {r["group"]: {x["code"] for x in r["reasons"]} for r in rep["refused"]}


# ------------------------------------------------------------------ 1. per-group error boundary
@pytest.mark.parametrize("ts", ["1.2.3.4", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5"])
def test_undecodable_transfer_syntax_refuses_its_group_only(tmp_path, ts):
    _, bad = good_and_bad(tmp_path)
    set_meta_transfer_syntax(bad[2], ts)
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "-q")
    assert r.exit_code == 4, r.output
    rep = report(tmp_path / "o")
    assert [o["group"] for o in rep["outputs"]] == ["1.1"]
    (reason,) = rep["refused"][0]["reasons"]
    assert reason["tag"] == "(0002,0010)" and bad[2] in reason["message"] and ts in reason["message"]


def _corrupt_rle(path):
    """Damage the RLE frame so that no decoder can rebuild it: its segments' bytes become
    PackBits no-ops (0x80), which decode to nothing, so every segment comes out short."""
    ds = pydicom.dcmread(path)
    data = bytearray(ds.PixelData)
    bot_len = struct.unpack_from("<L", data, 4)[0]
    item = 8 + bot_len                   # the frame's item header
    length = struct.unpack_from("<L", data, item + 4)[0]
    start = item + 8 + 64                # after the 64-byte RLE header
    data[start:item + 8 + length] = b"\x80" * (item + 8 + length - start)
    ds.PixelData = bytes(data)
    ds.save_as(path)


def test_corrupt_compressed_frame_refuses_its_group_and_the_report_is_written(tmp_path):
    _, bad = good_and_bad(tmp_path, transfer_syntax=RLELossless)
    _corrupt_rle(bad[3])
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o")
    assert r.exit_code == 4, r.output
    rep = report(tmp_path / "o")
    assert refusal_codes(rep) == {"2.1": {"DECODE_FAILED"}}
    assert bad[3] in rep["refused"][0]["reasons"][0]["message"]
    assert len(rep["outputs"]) == 1 and rep["exit_code"] == 4
    # every group refused: exit 5, and the report is still there
    shutil.rmtree(tmp_path / "in" / "good")
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o2")
    assert r.exit_code == 5, r.output
    assert report(tmp_path / "o2")["outputs"] == []


def test_report_is_written_when_the_run_stops_on_an_error(tmp_path, monkeypatch):
    good_and_bad(tmp_path)
    from dicomrecon import conversion

    def broken(*a, **k):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(conversion, "write_volume", broken)
    with pytest.raises(RuntimeError):
        conversion.convert(str(tmp_path / "in"), str(tmp_path / "o"))
    assert "disk on fire" in report(tmp_path / "o")["error"]


def test_api_raises_a_refusal_not_an_internal_error(tmp_path):
    _, bad = good_and_bad(tmp_path, transfer_syntax=RLELossless)
    _corrupt_rle(bad[0])
    with pytest.raises(RefusedError) as e:
        dicomrecon.read_volume(tmp_path / "in" / "bad")
    assert e.value.exit_code == 5 and e.value.findings[0].code == "DECODE_FAILED"
    with pytest.warns(RuntimeWarning, match=f"volume 2.1 refused: {bad[0]}"):
        vols = dicomrecon.read_volumes(tmp_path / "in")
    assert [v.array.shape for v in vols] == [(6, 16, 12)]  # the good series is still read


# ------------------------------------------------------------------ 2. huge integer intercept
def test_intercept_beyond_every_integer_type_gives_float32(tmp_path):
    spec = SeriesSpec(n_slices=4, modality="MR", intercepts=[1e20] * 4)
    write_series(spec, tmp_path / "in")
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "-f", "nii")
    assert r.exit_code == 0, r.output
    vol = dicomrecon.read_volume(tmp_path / "in")
    assert vol.array.dtype == np.float32 and np.isfinite(vol.array).all()
    assert np.allclose(vol.array, 1e20, rtol=1e-6)
    assert any("fit no integer type" in p for p in vol.metadata["processing"])


# ------------------------------------------------------------------ 3. non-finite rescale
@pytest.mark.parametrize("which,tag,value", [
    ("one", "RescaleSlope", "NaN"), ("all", "RescaleIntercept", "NaN"),
    ("all", "RescaleSlope", "Inf"), ("one", "RescaleIntercept", "-Inf"),
    ("all", "RescaleSlope", "1e300"), ("all", "RescaleSlope", "0"),
])
def test_non_finite_or_degenerate_rescale_is_refused_naming_tag_and_value(tmp_path, which, tag,
                                                                         value):
    paths = write_series(SeriesSpec(n_slices=5), tmp_path / "in")
    for p in paths if which == "all" else paths[2:3]:
        retag(p, **{tag: value})
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o")
    assert r.exit_code == 5, r.output
    (reason,) = report(tmp_path / "o")["refused"][0]["reasons"]
    assert reason["code"] == "RESCALE_INVALID"
    assert reason["tag"] == ("(0028,1053)" if tag == "RescaleSlope" else "(0028,1052)")
    assert f"value of '{float(value):g}'" in reason["message"]
    assert not list((tmp_path / "o").glob("*.nii.gz"))


def test_last_guard_refuses_any_non_finite_voxel():
    from dicomrecon.decode import DecodeError, check_finite
    from dicomrecon.header_model import SliceHeader
    h = SliceHeader(**{f: None for f in SliceHeader.__dataclass_fields__ if f not in (
        "patient_id", "patient_name", "trigger_time", "diffusion_bvalue",
        "diffusion_direction", "frame", "extra")})
    h.path, h.rescale_slope, h.rescale_intercept = "x.dcm", 1.0, 0.0
    a = np.zeros((2, 3, 3), np.float32)
    check_finite(a, [h, h])
    a[1, 2, 2] = np.inf
    with pytest.raises(DecodeError, match="x.dcm: non-finite"):
        check_finite(a, [h, h])


# ------------------------------------------------------------------ 4. damaged slices
def test_pixel_data_of_the_wrong_length_is_refused_naming_file_tag_and_lengths(tmp_path):
    paths = write_series(SeriesSpec(n_slices=8), tmp_path / "in")
    retag(paths[4], Rows=15)  # 16 rows of pixels stay
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "-q")
    assert r.exit_code == 4, r.output
    assert (f"skipped {paths[4]}: a (7FE0,0010) 'Pixel Data' length of 384 bytes does not "
            "match the header, it must be 360 bytes") in r.output  # shown even with -q
    rep = report(tmp_path / "o")
    assert sorted(o["shape_xyz"][2] for o in rep["outputs"]) == [3, 4]  # split at the hole
    assert [d["file"] for d in rep["damaged_files"]] == [paths[4]]


def test_partial_time_point_is_never_filled_by_interpolation(tmp_path):
    uid = generate_uid()
    for t in (1, 2, 3):
        write_series(SeriesSpec(series_uid=uid, n_slices=8, modality="MR", instance_offset=100 * t,
                                extra_tags={"TemporalPositionIdentifier": t}), tmp_path / "in" / f"t{t}")
    part = write_series(SeriesSpec(series_uid=uid, n_slices=8, modality="MR", instance_offset=400,
                                   extra_tags={"TemporalPositionIdentifier": 4}),
                        tmp_path / "in" / "t4")
    os.remove(part[2])
    os.remove(part[5])  # a quarter of the positions of time point 4 is missing
    for policy in (Policy(), Policy(merge_4d=True)):
        out = tmp_path / f"o{policy.merge_4d}"
        r = dicomrecon.convert(tmp_path / "in", out, policy=policy)
        rep = report(out)
        sides = [json.loads(open(o.sidecar).read()) for o in r.outputs]
        partial = [s for s in sides if s["source"]["split_keys"] == {
            "TemporalPositionIdentifier": 4} or "4" in str(s["source"]["group"]).split(".")[-1]]
        assert partial and all(s["volume"]["shape_xyz"][2] < 8 for s in partial)
        assert sum(s["volume"]["shape_xyz"][2] for s in partial) == 6
        for s in partial:
            codes = {f["code"] for f in s["findings"]}
            assert "INTERPOLATED_MISSING" not in codes and "PARTIAL_VOLUME" in codes
        assert rep["refused"] == []


# ------------------------------------------------------------------ 5. duplicates
def test_same_pixels_under_another_identity_are_not_dropped(tmp_path):
    paths = write_series(SeriesSpec(n_slices=6), tmp_path / "in")
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 77
    ds.save_as(tmp_path / "in" / "other.dcm")
    result = dicomrecon.scan(tmp_path / "in")
    assert result.skipped == []
    assert sorted(len(g.slices) for g in result.groups) == [1, 6]


def test_same_uid_and_pixels_but_another_series_number_is_a_conflict_not_a_copy(tmp_path):
    paths = write_series(SeriesSpec(n_slices=4), tmp_path / "in")
    ds = pydicom.dcmread(paths[1])
    ds.SeriesNumber = 8
    ds.save_as(tmp_path / "in" / "renumbered.dcm")
    result = dicomrecon.scan(tmp_path / "in")
    assert result.skipped == []
    codes = {g.label: {f.code for f in g.reasons} for g in result.groups}
    assert codes == {"3.1": {"SOP_INSTANCE_UID_CONFLICT"}, "8.1": {"SOP_INSTANCE_UID_CONFLICT"}}


def _three_sharing_one_uid(folder, names):
    paths = write_series(SeriesSpec(n_slices=5), folder)
    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    made = []
    for k, name in enumerate(names):
        ds.SeriesNumber = 10 + k
        arr = ds.pixel_array.copy()
        arr[0, 0] = k
        ds.PixelData = arr.tobytes()
        ds.save_as(os.path.join(folder, name))
        made.append(os.path.join(folder, name))
    return made


@pytest.mark.parametrize("names", [["a.dcm", "b.dcm", "c.dcm"], ["zz", "m", "0"]])
def test_one_uid_on_different_images_is_an_input_error_whatever_the_file_order(tmp_path, names):
    made = _three_sharing_one_uid(str(tmp_path / "in"), names)
    r = dicomrecon.convert(tmp_path / "in", tmp_path / "o")
    refused = {x.group: x.reasons for x in r.refused}
    assert sorted(refused) == ["10.1", "11.1", "12.1"]
    for reasons in refused.values():
        (f,) = reasons
        assert f["code"] == "SOP_INSTANCE_UID_CONFLICT" and f["tag"] == "(0008,0018)"
        assert all(p in f["message"] for p in made)
    assert [o.shape_xyz for o in r.outputs] == [(12, 16, 5)]  # the series itself is intact
    assert r.skipped == []


def test_exact_copy_dropped_once_per_file_whatever_the_names(tmp_path, corpus):
    src = corpus / "mosaic_si_fmri_ep2d_int"
    one = sorted(os.listdir(src))[0]
    outcomes = []
    for k, names in enumerate([("a", "b"), ("b", "a")]):
        d = tmp_path / f"in{k}"
        d.mkdir()
        for n in names:
            shutil.copy(src / one, d / n)
        result = dicomrecon.scan(d)
        assert len(result.skipped) == 1 and "an exact copy" in result.skipped[0][1]
        outcomes.append([len(g.slices) for g in result.groups])
    assert outcomes[0] == outcomes[1] and outcomes[0][0] > 1  # mosaic tiles, kept once


# ------------------------------------------------------------------ 7. output grid limits
def test_tiny_spacing_is_a_usage_error_before_any_decoding(tmp_path, monkeypatch):
    write_series(SeriesSpec(n_slices=10, rows=64, columns=64, tilt_deg=10), tmp_path / "in")
    from dicomrecon import conversion

    def no_decode(*a, **k):
        raise AssertionError("decoded pixels before checking the grid")
    monkeypatch.setattr(conversion, "decode", no_decode)
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "--spacing", "0.0001")
    assert r.exit_code == 2, r.output
    assert "--spacing 0.0001" in r.output and "32767" in r.output
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "--spacing", "0.00001", "-f", "nrrd")
    assert r.exit_code == 2, r.output
    assert "--spacing 1e-05" in r.output and "--max-voxels" in r.output
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "-f", "nrrd", "--max-voxels", "1000")
    assert r.exit_code == 5, r.output  # the data itself is over the limit: refused, named
    assert "GRID_TOO_LARGE" in json.dumps(report(tmp_path / "o")) and "--max-voxels" in r.output
    assert not [p for p in os.listdir(tmp_path / "o") if not p.endswith(".json")]


# ------------------------------------------------------------------ 9. NaN orientation
def test_nan_orientation_is_one_refusal_for_the_group(tmp_path):
    paths = write_series(SeriesSpec(n_slices=5), tmp_path / "in")
    for p in paths:
        retag(p, ImageOrientationPatient=["NaN", 0, 0, 0, 1, 0])
    result = dicomrecon.scan(tmp_path / "in")
    assert len(result.groups) == 1
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o")
    assert r.exit_code == 5
    (refusal,) = report(tmp_path / "o")["refused"]
    (reason,) = refusal["reasons"]
    assert reason["tag"] == "(0020,0037)" and "'nan\\0\\0\\0\\1\\0'" in reason["message"]


# ------------------------------------------------------------------ scan exit codes
def test_scan_exits_as_convert_would(tmp_path):
    good, bad = good_and_bad(tmp_path)
    assert run("scan", tmp_path / "in").exit_code == 0
    for p in bad:
        retag(p, RescaleSlope="NaN")
    assert run("scan", tmp_path / "in").exit_code == 4
    shutil.rmtree(tmp_path / "in" / "good")
    r = run("scan", tmp_path / "in")
    assert r.exit_code == 5 and "RESCALE_INVALID" in r.output


# ------------------------------------------------------------------ found by the fuzz test
def test_grid_no_format_can_store_is_refused_not_a_crash(tmp_path):
    (path,) = write_series(SeriesSpec(n_slices=1), tmp_path / "in")
    retag(path, SliceThickness="1e300")  # a single slice's z spacing is its SliceThickness
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "-f", "nii")
    assert r.exit_code == 5, r.output
    (reason,) = report(tmp_path / "o")["refused"][0]["reasons"]
    assert reason["code"] == "GEOMETRY_OUT_OF_RANGE" and "'Slice Thickness' '1e+300'" in \
        reason["message"]
