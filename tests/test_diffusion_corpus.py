"""Diffusion tables of every corpus DWI folder against dcm2niix, in patient coordinates.

dicomrecon writes ``*_4D.bval/.bvec`` with ``convert --4d``; each tool's bvec is mapped through
its own NIfTI affine (with FSL's x flip) to patient space, volumes are paired by their data,
b-values must agree within 1 s/mm² and directions within 1e-3 (up to sign, which diffusion
weighting does not see and dcm2niix flips for some vendors).
"""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

from dicomrecon.conversion import convert
from dicomrecon.plan import Policy

from dwi_compare import (dcm2niix_outputs, load_json, load_scaled, pair_volumes, read_table,
                         run_dcm2niix, same_axis, volume_sums)

pytestmark = pytest.mark.corpus
needs_dcm2niix = pytest.mark.skipif(shutil.which("dcm2niix") is None,
                                    reason="dcm2niix (pip install dcm2niix) is not installed")

DWI_4D = ["heudi_si_dwi_mosaic_mb3", "xa60_si_enh_dwi_sms2", "d2n_ph_dwi_b1000_3dir",
          "canon_dwi_ax20d_classic", "uih_dti_dir16_ap", "uih_dti_vframe_no_ipp"]


def _ours(folder, out):
    convert(str(folder), str(out), fmt="nii", policy=Policy(merge_4d=True))
    return [p[:-4] for p in glob.glob(os.path.join(out, "*_4D.nii"))]


def _compare_tables(ours_stem, d2n_stem):
    od, oa = load_scaled(ours_stem + ".nii")
    dd, da = load_scaled(d2n_stem + ".nii")
    ob, ov = read_table(ours_stem, oa)
    db, dv = read_table(d2n_stem, da)
    pairs = pair_volumes(volume_sums(od), volume_sums(dd), rel=1e-4)
    assert sorted(pairs) == list(range(len(db))), "every dcm2niix volume once"
    for i, j in enumerate(pairs):
        assert abs(ob[i] - db[j]) <= 1.0, (i, ob[i], db[j])
        if db[j] > 50:  # dcm2niix writes arbitrary vectors for its b~0 volumes
            assert ov is not None, f"{ours_stem}.bvec missing"
            assert same_axis(ov[i], dv[j], 1e-3), (i, ov[i], dv[j])


@needs_dcm2niix
@pytest.mark.parametrize("name", DWI_4D)
def test_bval_bvec_match_dcm2niix(corpus, tmp_path, name):
    run_dcm2niix(str(corpus / name), str(tmp_path / "d2n"))
    d2n = [s for s in dcm2niix_outputs(str(tmp_path / "d2n")) if os.path.exists(s + ".bval")]
    assert len(d2n) == 1
    ours = _ours(corpus / name, tmp_path / "ours")
    assert len(ours) == 1, ours
    _compare_tables(ours[0], d2n[0])
    side = load_json(ours[0] + ".json")
    assert side["diffusion"]["bval"] and side["diffusion"]["sources"]


@needs_dcm2niix
@pytest.mark.parametrize("phase", ["COL", "ROW"])
def test_ge_gradient_frame_matches_dcm2niix(corpus, tmp_path, phase):
    """GE stores the gradient along frequency/phase/slice: a copy of the GE DWI with
    (0018,1312) and an oblique-free but non-trivial vector set, converted by both tools."""
    import pydicom
    src = tmp_path / "ge"
    src.mkdir()
    for p in sorted((corpus / "d2n_ge_dwi_b1000_4slice").iterdir()):
        ds = pydicom.dcmread(p)
        ds.InPlanePhaseEncodingDirection = phase
        ds.PatientPosition = "HFS"
        if int(ds[0x0043, 0x1039].value[0]) > 0:
            for el, v in zip((0x10BB, 0x10BC, 0x10BD), ("0.6", "-0.48", "0.64")):
                ds[0x0019, el].value = v
        ds.save_as(src / p.name)
    run_dcm2niix(str(src), str(tmp_path / "d2n"))
    ours = _ours(src, tmp_path / "ours")
    _compare_tables(ours[0], dcm2niix_outputs(str(tmp_path / "d2n"))[0])


def test_ge_without_phase_direction_writes_no_bvec(corpus, tmp_path):
    """Without (0018,1312) GE's gradient frame is unknown: bval only, and the reason."""
    ours = _ours(corpus / "d2n_ge_dwi_b1000_4slice", tmp_path)
    assert len(ours) == 1
    assert np.loadtxt(ours[0] + ".bval").tolist() == [0, 1000]
    assert not os.path.exists(ours[0] + ".bvec")
    assert "(0018,1312)" in load_json(ours[0] + ".json")["diffusion"]["note"]


@needs_dcm2niix
def test_trace_images_are_separate_volumes(corpus, tmp_path):
    """Philips b=40/273/800 with zero vectors are isotropic (trace) images: each its own
    volume, never in a 4D; their b-values are dcm2niix's."""
    name = "d2n_ph_dwi_4b_zero_vectors"
    run_dcm2niix(str(corpus / name), str(tmp_path / "d2n"))
    theirs = np.loadtxt(dcm2niix_outputs(str(tmp_path / "d2n"))[0] + ".bval").tolist()
    convert(str(corpus / name), str(tmp_path / "ours"), fmt="nii", policy=Policy(merge_4d=True))
    assert not glob.glob(str(tmp_path / "ours" / "*_4D.nii"))
    sides = [load_json(p) for p in glob.glob(str(tmp_path / "ours" / "*.json"))
             if not p.endswith("report.json")]
    traces = sorted(s["diffusion"]["b_value"] for s in sides if "diffusion" in s)
    assert traces == sorted(b for b in theirs if b > 0)
    assert all(s["diffusion"]["trace"] for s in sides if "diffusion" in s)


@needs_dcm2niix
@pytest.mark.parametrize("name", ["uih_dti_dir16_ap", "uih_dti_vframe_no_ipp"])
def test_uih_vframe_placed_in_world(corpus, tmp_path, name):
    """UIH VFRAME mosaics (no top-level IPP) are converted; every voxel lies where dcm2niix
    puts it, with the same values, and each slice's first voxel is the IPP of its item in the
    private per-slice sequence (0065,1051)."""
    import pydicom
    from worldcompare import reindex, same_world_grid

    run_dcm2niix(str(corpus / name), str(tmp_path / "d2n"))
    ours = _ours(corpus / name, tmp_path / "ours")
    assert len(ours) == 1
    od, oa = load_scaled(ours[0] + ".nii")
    dd, da = load_scaled(dcm2niix_outputs(str(tmp_path / "d2n"))[0] + ".nii")
    mapping = same_world_grid(oa, od.shape, da, dd.shape, tol=1e-3)
    pairs = pair_volumes(volume_sums(od), volume_sums(dd), rel=1e-4)
    for t, j in enumerate(pairs):
        assert np.array_equal(reindex(dd[..., j], mapping, od.shape[:3]), od[..., t])
    first = sorted((corpus / name).iterdir())[0]
    items = pydicom.dcmread(first, stop_before_pixels=True)[0x0065, 0x1051].value
    ipps = np.array([[float(v) for v in it.ImagePositionPatient] for it in items])
    origins = np.array([(oa @ [0, 0, k, 1])[:3] for k in range(od.shape[2])])
    for p in ipps:
        assert np.min(np.abs(origins - p).max(axis=1)) < 1e-3, p


def test_names_say_what_split_the_volumes(corpus, tmp_path):
    """Echo/phase split (README: Philips dual echo, magnitude and phase) and trace images
    get suffixes that say so, not only _g1.._g4."""
    r = convert(str(corpus / "table_ph_dual_echo"), str(tmp_path / "a"), fmt="nii")
    names = sorted(os.path.basename(o.path) for o in r.outputs)
    assert names == ["1301_Dual-echo_iso_e1.nii", "1301_Dual-echo_iso_e2.nii",
                     "1301_Dual-echo_iso_ph_e1.nii", "1301_Dual-echo_iso_ph_e2.nii"]
    r = convert(str(corpus / "d2n_ph_dwi_4b_zero_vectors"), str(tmp_path / "b"), fmt="nii")
    names = {os.path.basename(o.path) for o in r.outputs}
    assert {"601_trace_b40.nii", "601_trace_b273.nii", "601_trace_b800.nii"} <= names


@needs_dcm2niix
@pytest.mark.parametrize("name", ["mosaic_si_fmri_ep2d_int", "stc_ge_fmri_rtia_asc",
                                  "ge_fmri_multiphase_4d", "sag_si_xa30_enhanced_4d",
                                  "heudi_si_dwi_mosaic_mb3"])
def test_time_axis_in_nifti_header(corpus, tmp_path, name):
    """A 4D time series carries TR (s) in pixdim[4] with xyzt_units mm + s, as dcm2niix
    writes; a diffusion 4D has no time unit (its 4th axis is not time)."""
    import nibabel as nib
    run_dcm2niix(str(corpus / name), str(tmp_path / "d2n"))
    theirs = nib.load(dcm2niix_outputs(str(tmp_path / "d2n"))[0] + ".nii").header
    ours = nib.load(_ours(corpus / name, tmp_path / "ours")[0] + ".nii").header
    if name.startswith("heudi"):
        assert ours["xyzt_units"] == 2 and ours["pixdim"][4] == 1.0
        return
    assert ours["xyzt_units"] == 2 | 8
    assert abs(ours["pixdim"][4] - theirs["pixdim"][4]) < 1e-6
    assert theirs.get_xyzt_units() == ours.get_xyzt_units() == ("mm", "sec")
