"""The command line: exit codes, one-line errors, skipped files listed, input never touched."""

import json
import os
import subprocess
import sys
from enum import Enum
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dicomrecon.cli import app
from dicomrecon.synthetic import SeriesSpec, write_series

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def series(tmp_path):
    spec = SeriesSpec(series_number=7, series_description="Head/Neck 5mm", shuffle_names=True)
    paths = write_series(spec, tmp_path / "in")
    return tmp_path / "in", spec, paths


def test_convert_writes_volume_sidecar_and_report(series, tmp_path):
    src, spec, paths = series
    before = snapshot(src)
    r = run("convert", src, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "7_Head_Neck_5mm.json", "7_Head_Neck_5mm.nii.gz", "dicomrecon-report.json"]
    side = json.loads((out / "7_Head_Neck_5mm.json").read_text())
    assert side["source"]["series_instance_uid"] == spec.series_uid
    # one SOPInstanceUID per output slice, in ascending position order
    import pydicom
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in paths}
    z = [by_uid[s["sop_instance_uid"]] for s in side["slices"]]
    assert [float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in z] == sorted(spec.ipps()[:, 2])
    assert side["volume"]["shape_xyz"] == [spec.columns, spec.rows, spec.n_slices]
    assert side["values"]["units"] == "HU" and side["values"]["output_dtype"] == "int16"
    assert side["tags"]["RescaleIntercept"] == -1024.0
    assert side["dicomrecon_version"]
    assert side["geometry"]["spacing"]["regular"] is True
    assert snapshot(src) == before  # the input folder is never changed


@pytest.mark.parametrize("fmt", ["nii", "nii.gz", "nrrd", "mha"])
def test_formats(series, tmp_path, fmt):
    src, _, _ = series
    r = run("convert", src, "-o", tmp_path / "o", "-f", fmt, "--name", "%m_%n")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / f"CT_7.{fmt}").is_file()


def test_empty_folder_is_no_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("convert", tmp_path / "empty", "-o", tmp_path / "o")
    assert r.exit_code == 3 and "no DICOM image found" in r.output


def test_missing_input_is_bad_input(tmp_path):
    r = run("scan", tmp_path / "nope")
    assert r.exit_code == 7 and "no such file or folder" in r.output


def test_non_dicom_files_are_listed_and_reported(tmp_path):
    d = tmp_path / "junk"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    r = run("scan", d)
    assert r.exit_code == 3
    assert "notes.txt: not a DICOM file" in r.output


def test_truncated_file_is_skipped_with_reason_and_the_rest_converts(series, tmp_path):
    src, spec, paths = series
    import pydicom
    last = max(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    data = open(last, "rb").read()
    open(last, "wb").write(data[:-100])
    r = run("convert", src, "-o", tmp_path / "o", "-q")
    assert r.exit_code == 4, r.output  # partial: the volume lost a slice (README "Damaged slices")
    assert f"skipped {last}: truncated (7FE0,0010) 'Pixel Data'" in r.output  # even with -q
    rep = json.loads((tmp_path / "o" / "dicomrecon-report.json").read_text())
    assert rep["skipped_files"][0]["file"] == last
    assert rep["damaged_files"][0]["file"] == last
    assert rep["outputs"][0]["shape_xyz"] == [spec.columns, spec.rows, spec.n_slices - 1]
    side = json.loads(next((tmp_path / "o").glob("7_*.json")).read_text())
    assert any(f["code"] == "DAMAGED_SLICE" and last in f["message"] for f in side["findings"])


def test_truncated_middle_slice_leaves_a_gap_that_is_reported_or_refused(series, tmp_path):
    src, _, paths = series
    import pydicom
    order = sorted(paths, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    open(order[4], "r+b").truncate(500)
    r = run("convert", src, "-o", tmp_path / "o", "--irregular", "refuse")
    assert r.exit_code == 5
    assert "1 missing slice" in r.output
    assert not list((tmp_path / "o").glob("*.nii.gz"))
    # by default a slice lost to damage is never interpolated: the volume is split there
    r = run("convert", src, "-o", tmp_path / "o2")
    assert r.exit_code == 4, r.output
    sides = [json.loads(p.read_text()) for p in sorted((tmp_path / "o2").glob("7_*.json"))]
    assert sorted(s["volume"]["shape_xyz"][2] for s in sides) == [4, 5]
    for side in sides:
        codes = {f["code"] for f in side["findings"]}
        assert {"DAMAGED_SLICE", "SPLIT_AT_MISSING"} <= codes
        assert "INTERPOLATED_MISSING" not in codes


def test_slice_without_position_refuses_its_group_naming_file_and_tag(series, tmp_path):
    src, _, paths = series
    import pydicom
    ds = pydicom.dcmread(paths[2])
    del ds.ImagePositionPatient
    ds.save_as(paths[2])
    r = run("convert", src, "-o", tmp_path / "o")
    assert r.exit_code == 5
    assert os.path.basename(paths[2]) in r.output
    assert "(0020,0032) 'Image Position (Patient)' missing in 1 of 10 file(s)" in r.output


def test_slice_with_other_matrix_is_a_separate_group(tmp_path):
    spec = SeriesSpec()
    write_series(spec, tmp_path / "in")
    odd = SeriesSpec(rows=8, columns=8, n_slices=1, series_uid=spec.series_uid, origin=(0, 0, 100))
    write_series(odd, tmp_path / "in" / "odd")
    r = run("scan", tmp_path / "in", "--json")
    doc = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    groups = doc["series"][0]["groups"]
    assert [g["shape_xyz"] for g in groups] == [[12, 16, 10], [8, 8, 1]]
    assert groups[1]["split_keys"]["matrix"] == "8x8"


def test_some_groups_refused_is_exit_4_and_the_rest_is_written(tmp_path):
    write_series(SeriesSpec(series_number=1), tmp_path / "in" / "a")
    write_series(SeriesSpec(series_number=2, tilt_deg=12), tmp_path / "in" / "b")
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o", "--tilt", "refuse")
    assert r.exit_code == 4
    assert "refused group 2.1: gantry tilt of 12 deg" in r.output
    assert (tmp_path / "o" / "1_synthetic_axial.nii.gz").is_file()
    assert not (tmp_path / "o" / "2_synthetic_axial.nii.gz").exists()


def test_output_inside_input_is_refused(series):
    src, _, _ = series
    r = run("convert", src, "-o", src / "out")
    assert r.exit_code == 6 and "inside the input folder" in r.output
    assert not (src / "out").exists()


def test_output_that_is_a_file_is_refused(series, tmp_path):
    src, _, _ = series
    (tmp_path / "afile").write_text("x")
    r = run("convert", src, "-o", tmp_path / "afile")
    assert r.exit_code == 6 and "not a folder" in r.output


def test_unique_names_for_same_series_number(tmp_path):
    write_series(SeriesSpec(series_number=5), tmp_path / "in" / "a")
    write_series(SeriesSpec(series_number=5), tmp_path / "in" / "b")
    r = run("convert", tmp_path / "in", "-o", tmp_path / "o")
    assert r.exit_code == 0
    names = sorted(p.name for p in (tmp_path / "o").glob("*.nii.gz"))
    assert names == ["5_synthetic_axial.nii.gz", "5_synthetic_axial_2.nii.gz"]


def test_scan_table_shows_tilt_and_findings(tmp_path):
    write_series(SeriesSpec(tilt_deg=15, gantry_tilt_tag=15.0), tmp_path)
    r = run("scan", tmp_path)
    assert r.exit_code == 0
    assert "15 (tag 15)" in r.output and "resample (GANTRY_TILT)" in r.output
    r = run("scan", tmp_path, "--tilt", "refuse")
    assert "REFUSED: REFUSED_TILT" in r.output


def test_bad_policy_value_is_a_usage_error(series, tmp_path):
    src, _, _ = series
    r = run("convert", src, "-o", tmp_path / "o", "--spacing", "-2")
    assert r.exit_code == 2 and "positive" in r.output


def test_no_traceback_without_debug_and_traceback_with_it(series, tmp_path, monkeypatch):
    src, _, _ = series
    import dicomrecon.conversion as conv

    def broken(*a, **k):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(conv, "decode", broken)
    r = run("convert", src, "-o", tmp_path / "o")
    assert r.exit_code == 1
    assert "internal error: ZeroDivisionError: boom" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["--debug", "convert", str(src), "-o", str(tmp_path / "o2")])
    assert isinstance(r.exception, ZeroDivisionError)


def test_console_script_runs_end_to_end(series, tmp_path):
    src, _, _ = series
    p = subprocess.run([sys.executable, "-m", "dicomrecon.cli", "convert", str(src), "-o",
                        str(tmp_path / "o"), "-f", "nii"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stdout and "Traceback" not in p.stderr


def test_typed_values_skip_typer_coercion_with_the_same_result():
    """Values that already have their parameter's type skip typer's pydantic coercion
    (cli._AsTyped, for start-up time): for every default of every command, the result is what
    typer's own coercion gives; a value typed on the command line still goes through typer."""
    import click
    import typer.main
    from typer._coercion import build_runtime_param
    from dicomrecon.cli import _AsTyped
    group = typer.main.get_command(app)
    commands = [group] + list(group.commands.values())
    checked = 0
    for cmd in commands:
        ctx = click.Context(cmd)
        for param in cmd.get_params(ctx):
            if not hasattr(param, "type_descriptor"):
                continue
            fast = _AsTyped(param.type_descriptor)
            default = param.get_default(ctx)
            theirs = build_runtime_param(param.type_descriptor).coerce(default, param=param,
                                                                        ctx=ctx)
            ours = fast.coerce(default, param=param, ctx=ctx)
            assert ours == theirs and type(ours) is type(theirs), (cmd.name, param.name)
            checked += 1
    assert checked > 40
    r = run("scan", ".", "--max-gap", "x")
    assert r.exit_code == 2 and "Invalid value for '--max-gap'" in r.output
    r = run("scan", ".", "--tilt", "tilted")
    assert r.exit_code == 2 and "'tilted' is not one of" in r.output


def test_command_line_strings_skip_typer_coercion_with_the_same_result():
    """Strings typed on the command line for Enum, Path, int and float options are converted
    without typer's pydantic coercion where the result is plain (cli._plain_value): for every
    such parameter of every command and a set of valid and invalid strings, the result (or the
    error) is exactly typer's own."""
    import click
    import typer.main
    from typer._coercion import build_runtime_param
    from dicomrecon.cli import _AsTyped

    def outcome(coercer, value, param, ctx):
        try:
            v = coercer.coerce(value, param=param, ctx=ctx)
            return ("ok", repr(v), type(v))
        except Exception as exc:  # noqa: BLE001 -- the error itself is compared
            return ("error", type(exc), str(exc))

    samples = {int: ["3", "-2", "+4", "007", "1e3", "3.0", " 3", "x", ""],
               float: ["3", "0.5", ".5", "-1e-3", "2.", "inf", "nan", "1_0", "0x10", "x", ""],
               Path: ["out", "a/b c", "./x.nii", ""]}
    group = typer.main.get_command(app)
    seen = set()
    for cmd in [group] + list(group.commands.values()):
        ctx = click.Context(cmd)
        for param in cmd.get_params(ctx):
            if not hasattr(param, "type_descriptor") or param.multiple or param.nargs == -1:
                continue
            fast = _AsTyped(param.type_descriptor)
            if fast.type is None:
                continue
            kind = fast.type
            values = ([m.value for m in kind] + [m.value.upper() for m in kind] + ["bogus"]
                      if issubclass(kind, Enum) else samples.get(kind, []))
            theirs = build_runtime_param(param.type_descriptor)
            for value in values:
                assert outcome(fast, value, param, ctx) == outcome(theirs, value, param, ctx), \
                    (cmd.name, param.name, value)
                seen.add(kind if not issubclass(kind, Enum) else Enum)
    assert {int, float, Path, Enum} <= seen
