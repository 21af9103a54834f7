"""Issue 14: tolerances carried by the Policy into scan and plan, 4D volumes in the API, and the
CLI polish (typer's CliRunner, exit codes and messages)."""

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import dicomrecon
from dicomrecon.cli import app
from dicomrecon.geometry import DEFAULT_TOLERANCES, Tolerances
from dicomrecon.plan import Policy, plan_group
from dicomrecon.synthetic import SeriesSpec, write_series

runner = CliRunner()

#: steps of 2.0 mm and 2.06 mm: 3 % apart, irregular at the default 1 %, regular at 5 %
STEPS = [2.0, 2.06, 2.0, 2.06, 2.0, 2.06, 2.0]


@pytest.fixture(scope="module")
def wobbly(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wobbly")
    z = np.concatenate([[30.0], 30.0 + np.cumsum(STEPS)])
    write_series(SeriesSpec(positions=[(-10.0, -20.0, v) for v in z]), str(folder))
    return folder


def test_a_looser_spacing_tolerance_makes_the_stack_regular_in_scan_and_plan_alike(wobbly):
    strict = dicomrecon.scan(wobbly)
    g = strict.groups[0]
    assert not g.geometry.spacing.regular
    assert plan_group(g, Policy()).volumes[0].kind == "resample"
    loose = Policy(tolerances=Tolerances(spacing_rel=0.05))
    g = dicomrecon.scan(wobbly, policy=loose).groups[0]
    assert g.geometry.spacing.regular and g.tolerances == loose.tolerances
    vp = plan_group(g, loose).volumes[0]
    assert vp.kind == "stack" and vp.geometry.spacing.regular  # the plan's own geometry agrees
    vol = dicomrecon.read_volume(wobbly, policy=loose)
    assert vol.provenance.reconstruction == "stack"
    assert vol.provenance.policy["tolerances"]["spacing_rel"] == 0.05
    assert dicomrecon.read_volume(wobbly).provenance.reconstruction == "resample"


def test_plan_refuses_a_group_scanned_with_other_tolerances(wobbly):
    g = dicomrecon.scan(wobbly).groups[0]
    with pytest.raises(ValueError, match="scanned with"):
        plan_group(g, Policy(tolerances=dataclasses.replace(DEFAULT_TOLERANCES, spacing_rel=0.05)))


def _kind(stdout: str) -> str:
    return json.loads(stdout)["series"][0]["groups"][0]["volumes"][0]["reconstruction"]


def test_cli_spacing_tolerance_reaches_scan_and_convert(wobbly, tmp_path):
    r = runner.invoke(app, ["scan", str(wobbly), "--json"])
    assert r.exit_code == 0, r.output
    assert _kind(r.stdout) == "resample"
    r = runner.invoke(app, ["scan", str(wobbly), "--json", "--spacing-tolerance", "0.05"])
    assert r.exit_code == 0, r.output
    assert _kind(r.stdout) == "stack"
    r = runner.invoke(app, ["convert", str(wobbly), "-o", str(tmp_path / "o"), "-f", "nii",
                            "--spacing-tolerance", "0.05"])
    assert r.exit_code == 0, r.output
    side = json.loads(next((tmp_path / "o").glob("*.json")).read_text())
    assert side["reconstruction"] == "stack"
    r = runner.invoke(app, ["scan", str(wobbly), "--spacing-tolerance", "2"])
    assert r.exit_code == 2 and "--spacing-tolerance" in r.output


def test_read_volumes_merge_4d_gives_the_4d_volume_convert_writes(corpus, tmp_path):
    import nibabel as nib
    folder = corpus / "ge_fmri_multiphase_4d"
    policy = Policy(merge_4d=True)
    vols = dicomrecon.read_volumes(folder, policy=policy)
    four = [v for v in vols if v.is_4d]
    assert len(four) == 1
    vol = four[0]
    nt = vol.array.shape[0]
    out = [o for o in dicomrecon.convert(str(folder), str(tmp_path), fmt="nii", policy=policy).outputs
           if len(o.shape_xyz) == 4][0]
    img = nib.load(out.path)
    assert img.shape == vol.shape_xyz + (nt,)
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol.to_nibabel().get_fdata().astype(
        np.asarray(img.dataobj).dtype))
    np.testing.assert_allclose(img.affine, vol.to_nibabel().affine, atol=1e-4)
    side = json.loads(open(out.sidecar).read())
    fourth = vol.provenance.fourth_axis
    assert [fourth.key, list(fourth.values)] == [side["fourth_axis"]["key"],
                                                 side["fourth_axis"]["values"]]
    assert vol.label == "+".join(side["source"]["group"]) and vol.label.count("+") == nt - 1
    json.dumps(vol.provenance.to_json())
    # one time point is an ordinary 3D volume with its own sources; spatial ops refuse 4D
    t1 = vol.at(1)
    np.testing.assert_array_equal(t1.array, vol.array[1])
    assert t1.label == side["volumes"][1]["group"]
    assert t1.provenance.slices[0].sop_instance_uid == side["volumes"][1]["slices"][0]["sop_instance_uid"]
    assert t1.crop((0, 0, 0), (4, 4, 1)).shape_xyz == (4, 4, 1)
    for op in (lambda v: v[0:2], lambda v: v.pad(1), lambda v: v.to_sitk(),
               lambda v: v.to_orientation("RAS"), lambda v: v.flip("x")):
        with pytest.raises(ValueError, match=r"4D .*\.at\(t\)"):
            op(vol)
    assert "x" + str(nt) in repr(vol)


def test_read_volumes_labels_every_volume(corpus):
    vols = dicomrecon.read_volumes(corpus / "table_ph_dual_echo")
    labels = [v.label for v in vols]
    assert len(vols) >= 2 and len(set(labels)) == len(labels) and all(labels)
    for v in vols:
        assert dicomrecon.read_volume(corpus / "table_ph_dual_echo", group=v.label.split("p")[0]
                                      ).provenance.source.group == v.provenance.source.group


# --------------------------------------------------------------------------------------------
# CLI polish
# --------------------------------------------------------------------------------------------
def test_usage_lines_show_input_and_scan_help_does_not_say_write():
    for cmd, arg in (("scan", "INPUT"), ("convert", "INPUT"), ("export", "INPUT"),
                     ("qc", "OUTDIR"), ("batch", "[INPUT]..."), ("query", "URL")):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0
        usage = r.output.splitlines()[0]
        assert usage.endswith(" " + arg) and "{" not in usage, usage
    r = runner.invoke(app, ["scan", "--help"])
    assert "writ" not in r.output.lower()


def test_usage_errors_name_the_option_not_the_field(wobbly, tmp_path):
    r = runner.invoke(app, ["convert", str(wobbly), "-o", str(tmp_path / "o"), "--max-gap", "0.5"])
    assert r.exit_code == 2
    assert "--max-gap" in r.output and "max_gap" not in r.output
    r = runner.invoke(app, ["scan", str(wobbly), "--max-voxels", "0"])
    assert r.exit_code == 2 and "--max-voxels" in r.output and "max_voxels" not in r.output


def test_split_by_shows_full_distinct_values(tmp_path):
    long_a, long_b = "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D\\FILTERED", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D\\UNFILT"
    for i, it in enumerate((long_a, long_b)):  # one series, two image types at every position
        write_series(SeriesSpec(series_uid="1.2.826.0.1.3680043.2.1125.77", instance_offset=10 * i,
                                extra_tags={"ImageType": it.split("\\")}), str(tmp_path / str(i)))
    r = runner.invoke(app, ["scan", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.output.splitlines() if ln.startswith("3.")]
    assert len(rows) == 2
    assert "FILTERED" in rows[0] + rows[1] and "UNFILT" in rows[0] + rows[1]


def test_messages_show_no_python_none_and_lead_with_the_code(corpus):
    r = runner.invoke(app, ["scan", str(corpus / "d2n_ct_siemens_same_position")])
    assert "None" not in r.output
    assert "warning SINGLE_SLICE: " in r.output
    r = runner.invoke(app, ["scan", str(corpus / "pyd_cr_monochrome1_j2kr")])
    finding_lines = [ln for ln in r.output.splitlines() if ln.startswith("  1.1 ")]
    assert finding_lines and all(ln.startswith("  1.1 error NO_GEOMETRY: ") for ln in finding_lines)


def test_refused_groups_name_their_code_and_no_line_starts_with_a_file_name(corpus, tmp_path):
    r = runner.invoke(app, ["convert", str(corpus / "pyd_cr_monochrome1_j2kr"), "-o",
                            str(tmp_path / "o")])
    assert r.exit_code == 5
    line = [ln for ln in r.output.splitlines() if "RG3_J2KR.dcm" in ln]
    assert line and all(ln.startswith(("refused group 1.1: ", "skipped ")) for ln in line)
    assert any(ln.endswith("[NO_GEOMETRY]") for ln in line)


def test_non_ascii_letters_are_kept_in_output_names(tmp_path):
    write_series(SeriesSpec(series_description="Schädel 頭部 / T1",
                            extra_tags={"SpecificCharacterSet": "ISO_IR 192"}), str(tmp_path / "in"))
    r = runner.invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-f", "nii"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "3_Schädel_頭部_T1.nii").is_file()


def test_debug_prints_a_plain_traceback(tmp_path):
    import subprocess
    import sys
    missing = tmp_path / "nothing-here"
    missing.mkdir()
    p = subprocess.run([sys.executable, "-m", "dicomrecon.cli", "--debug", "scan", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback (most recent call last):" in p.stderr and "NoDicomError" in p.stderr
    assert "╭" not in p.stderr and "│" not in p.stderr  # no rich box drawing
    p = subprocess.run([sys.executable, "-m", "dicomrecon.cli", "scan", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "Traceback" not in p.stderr


def test_tilt_preserve_says_what_itk_can_open(corpus, tmp_path):
    import SimpleITK as sitk
    folder = corpus / "ct_philips_s21610_s3010_tilt16p5"
    for fmt in ("nii", "nrrd"):
        r = runner.invoke(app, ["convert", str(folder), "-o", str(tmp_path / fmt), "-f", fmt,
                                "--tilt", "preserve"])
        assert r.exit_code == 0, r.output
        assert "note: " in r.output and "SimpleITK/ITK cannot open the NIfTI" in r.output
        side = next((tmp_path / fmt).glob("*.json"))
        codes = {f["code"]: f["message"] for f in json.loads(side.read_text())["findings"]}
        assert "non-orthonormal direction" in codes["SHEARED_GRID"]
    # the claims hold: ITK refuses the NIfTI and opens the NRRD non-orthonormal
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(next((tmp_path / "nii").glob("*.nii"))))
    d = np.array(sitk.ReadImage(str(next((tmp_path / "nrrd").glob("*.nrrd")))).GetDirection())
    assert not np.allclose(d.reshape(3, 3).T @ d.reshape(3, 3), np.eye(3), atol=1e-3)


def test_scan_json_has_a_schema_version(wobbly):
    from dicomrecon.report import SCAN_SCHEMA_VERSION
    r = runner.invoke(app, ["scan", str(wobbly), "--json"])
    assert json.loads(r.stdout)["schema_version"] == SCAN_SCHEMA_VERSION


def test_the_model_is_public(wobbly):
    assert {"Provenance", "Tolerances", "provenance"} <= set(dir(dicomrecon))
    vol = dicomrecon.read_volume(wobbly)
    assert isinstance(vol.provenance, dicomrecon.Provenance)
    assert vol.findings == vol.provenance.findings and vol.findings  # irregular spacing noted
    assert "SPACING_IRREGULAR" in {f.code for f in vol.findings} or any(
        "irregular" in f.message for f in vol.findings)
