"""Export as a derived DICOM series: dciodvfy-valid, and read back identically by dicomrecon,
SimpleITK (ImageSeriesReader) and dcm2niix.

Every round trip compares against the volume that was exported, never against what
dicomrecon wrote: geometry (origin, spacing, direction within 1e-4 mm), integers exactly,
floats within half the reported quantisation step (plus float32 rounding of the reader).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

import dicomrecon
from dicomrecon.cli import app
from dicomrecon.conversion import convert
from dicomrecon.errors import OutputError, RefusedError
from dicomrecon.export import (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SC_IMAGE_STORAGE,
                               ExportUsageError, export_series, plan_values, slice_geometry)
from dicomrecon.synthetic import SeriesSpec, write_series
from dicomrecon.volume import Volume
from worldcompare import index_mapping, reindex

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
GEOM_TOL = 1e-4
runner = CliRunner()


# ============================================================================================
# Helpers
# ============================================================================================
def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation about x, then y, then z (degrees): a double-oblique direction for ax, ay != 0."""
    x, y, z = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(direction, spacing, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction) * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a


DOUBLE_OBLIQUE = rotation(20, -15, 10)


def dciodvfy(path) -> tuple:
    """(error lines, warning lines) of dciodvfy for one file.  Fails if dciodvfy is missing."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy is not installed (Debian package dicom3tools): "
                    "apt-get install -y dicom3tools")
    p = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (p.stdout + p.stderr).splitlines()
    return ([l for l in lines if l.startswith("Error")],
            [l for l in lines if l.startswith("Warning")])


def assert_valid(files) -> set:
    """No dciodvfy error on any file; returns the distinct warnings."""
    assert files
    warnings = set()
    for f in files:
        errors, warns = dciodvfy(f)
        assert not errors, f"{f}:\n" + "\n".join(errors)
        warnings.update(warns)
    return warnings


def expected(vol: Volume, result):
    """(array (nz, ny, nx), LPS affine) a reader should return: the exported volume, with its
    z axis reversed when the grid was left-handed."""
    arr, aff = np.asarray(vol.array), np.asarray(vol.affine, float).copy()
    if result.z_reversed:
        arr = arr[::-1]
        aff[:3, 3] = aff[:3, 3] + (vol.array.shape[0] - 1) * aff[:3, 2]
        aff[:3, 2] = -aff[:3, 2]
    return arr, aff


def exact(result) -> bool:
    return result.values is None or result.values.exact  # RGB has no value encoding: exact


def value_tol(result, arr) -> float:
    if exact(result):
        return 0.0
    return result.values.step / 2 * (1 + 1e-6) + 4 * np.finfo(np.float32).eps * \
        float(np.abs(arr).max())


def assert_values(got, want, tol):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = float(np.max(np.abs(got - want)))
    assert err <= tol, f"largest value error {err} > {tol}"


def check_dicomrecon(vol, result):
    want, aff = expected(vol, result)
    back = dicomrecon.read_volume(result.outdir)
    assert np.abs(back.affine - aff).max() <= GEOM_TOL, (back.affine, aff)
    if exact(result):
        assert np.array_equal(back.array, want)
    else:
        assert_values(back.array, want, value_tol(result, want))
    return back


def check_sitk(vol, result):
    want, aff = expected(vol, result)
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(result.outdir)
    assert len(files) == want.shape[0]
    reader.SetFileNames(files)
    img = reader.Execute()
    origin, spacing = np.array(img.GetOrigin()), np.array(img.GetSpacing())
    direction = np.array(img.GetDirection()).reshape(3, 3)
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    assert np.abs(origin - aff[:3, 3]).max() <= GEOM_TOL
    assert np.abs(spacing - sp).max() <= GEOM_TOL
    assert np.abs(direction * spacing - aff[:3, :3]).max() <= GEOM_TOL
    arr = sitk.GetArrayFromImage(img)
    if exact(result):
        assert np.array_equal(arr, want)
    else:
        assert_values(arr, want, value_tol(result, want))


def check_dcm2niix(vol, result, tmp_path):
    import nibabel as nib
    want, aff = expected(vol, result)
    out = tmp_path / "dcm2niix"
    out.mkdir()
    p = subprocess.run(["dcm2niix", "-o", str(out), "-f", "back", "-z", "n", "-b", "n",
                        result.outdir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    niis = sorted(out.glob("*.nii"))
    assert len(niis) == 1, (niis, p.stdout)
    img = nib.load(str(niis[0]))
    data = np.asanyarray(img.dataobj) if vol.array.ndim == 4 else img.get_fdata()
    ours_ras = LPS_TO_RAS @ aff
    mapping = index_mapping(ours_ras, img.affine)          # their index = M @ our index
    if vol.array.ndim == 4:  # RGB: dcm2niix stores x, y, z with an RGB record per voxel
        data = np.stack([np.asarray(data[c]) for c in ("R", "G", "B")], axis=-1)
        ours = np.transpose(want, (2, 1, 0, 3))
        got = np.stack([reindex(data[..., c], mapping, ours.shape[:3]) for c in range(3)], -1)
        assert np.array_equal(got, ours)
        return
    ours = np.transpose(want, (2, 1, 0))
    got = reindex(data, mapping, ours.shape)
    tol = 0.0 if exact(result) else value_tol(result, want) + 1e-4 * result.values.step
    assert_values(got, ours, tol)


def check_all(vol, result, tmp_path) -> set:
    warnings = assert_valid(result.files)
    check_dicomrecon(vol, result)
    check_sitk(vol, result)
    check_dcm2niix(vol, result, tmp_path)
    return warnings


def read(path):
    return pydicom.dcmread(str(path), stop_before_pixels=True)


@pytest.fixture
def ct_source(tmp_path):
    """A double-oblique synthetic CT series converted by dicomrecon: (folder, nii, sidecar)."""
    d = DOUBLE_OBLIQUE
    spec = SeriesSpec(rows=9, columns=7, n_slices=5, pixel_spacing=(0.8, 0.6), slice_step=2.5,
                      iop=tuple(np.r_[d[:, 0], d[:, 1]].round(8)), origin=(-12.5, 30.25, 41.0),
                      series_number=4, series_description="oblique CT")
    src = tmp_path / "ct"
    write_series(spec, str(src))
    r = convert(str(src), str(tmp_path / "nifti"))
    assert len(r.outputs) == 1
    return src, r.outputs[0].path, r.outputs[0].sidecar


# ============================================================================================
# Pure parts: values and geometry
# ============================================================================================
@pytest.mark.parametrize("values, dtype, ct, stored_dtype, intercept, rescale", [
    ([0, 1, 7, 255], "uint8", False, "uint16", 0, False),            # labels: exact, as they are
    ([-5, 0, 300], "int16", False, "int16", 0, False),              # int16 stays int16
    ([0, 40000], "int32", False, "uint16", 0, False),
    ([-1000, 0, 3000], "int16", True, "uint16", -1024, True),       # CT: HU + 1024
    ([-3024, 0, 3000], "int16", True, "int16", -1024, True),        # CT below -1024 HU
    ([100000, 160000], "int32", False, "uint16", 100000, True),     # range <= 65535: exact
    ([-2.0, 0.0, 1200.0], "float32", True, "uint16", -1024, True),  # whole floats: exact
])
def test_plan_values_exact(values, dtype, ct, stored_dtype, intercept, rescale):
    a = np.array(values, dtype=dtype).reshape(1, 1, -1)
    enc, stored = plan_values(a, ct=ct)
    assert (enc.stored_dtype, enc.intercept, enc.rescale, enc.exact) == \
        (stored_dtype, intercept, rescale, True)
    assert stored.dtype == np.dtype(stored_dtype)
    assert np.array_equal(stored.astype(np.int64) * int(enc.slope) + int(enc.intercept), a)
    assert enc.rescale_type == ("HU" if ct else ("US" if rescale else ""))


@pytest.mark.parametrize("lo, hi", [(-3.2, 7.5), (1000.0, 1000.001), (0.0, 1e-6), (-5e6, 4e9)])
def test_plan_values_quantised_within_half_a_step(lo, hi):
    a = np.linspace(lo, hi, 1000).reshape(10, 10, 10)
    a[0, 0, 1] = lo + (hi - lo) / 3  # off the linspace lattice
    enc, stored = plan_values(a)
    assert not enc.exact and enc.stored_dtype == "uint16" and enc.rescale
    assert stored.min() == 0 and stored.max() >= 65534  # the full 16 bits are used
    # the DS strings are what readers see: decode with them
    back = stored * float(enc.slope_ds) + float(enc.intercept_ds)
    assert len(enc.slope_ds) <= 16 and len(enc.intercept_ds) <= 16
    assert np.abs(back - a).max() <= enc.step / 2 * (1 + 1e-9)
    assert enc.max_error == pytest.approx(np.abs(back - a).max(), rel=1e-6, abs=1e-300)
    assert enc.step == pytest.approx((hi - lo) / 65535, rel=1e-6)


def test_plan_values_refuses_nan():
    a = np.zeros((2, 2, 2), np.float32)
    a[1, 1, 1] = np.nan
    with pytest.raises(RefusedError, match="1 voxel.*NaN"):
        plan_values(a)


def test_sheared_grid_is_refused_naming_the_shear(tmp_path):
    aff = make_affine(np.eye(3), (1, 1, 2), (0, 0, 0))
    aff[1, 2] = np.tan(np.radians(16.5)) * 2  # z drifts along y: a gantry tilt of 16.5 deg
    with pytest.raises(RefusedError, match=r"sheared.*16\.5 deg from the slice normal"):
        export_series(Volume(np.zeros((3, 4, 5), np.int16), aff), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_slice_geometry_left_handed_is_written_in_reverse():
    aff = make_affine(np.diag([1, 1, -1]), (0.5, 0.6, 2.0), (1, 2, 3))
    g = slice_geometry(aff, 4)
    assert g.z_reversed
    assert np.allclose(g.ipps[:, 2], [-3, -1, 1, 3])   # ascending along cross(row, column)
    assert np.allclose(g.iop, [1, 0, 0, 0, 1, 0]) and g.pixel_spacing == (0.6, 0.5)


# ============================================================================================
# Round trips through dicomrecon, SimpleITK and dcm2niix (with dciodvfy on every file)
# ============================================================================================
def test_ct_with_sidecar_reference_round_trip(ct_source, tmp_path):
    src, nii, side = ct_source
    before = dicomrecon.read_volume(str(src))
    vol = Volume.from_sitk(sitk.ReadImage(nii))
    result = export_series(nii, tmp_path / "out")   # NAME.json beside NAME.nii.gz: automatic
    assert any("reference:" in n and n.endswith("ignores it)") for n in result.notes)
    assert result.reference == f"sidecar {side}"
    assert result.sop_class_uid == CT_IMAGE_STORAGE and result.modality == "CT"
    assert result.values.exact and result.values.intercept == -1024
    assert result.values.rescale_type == "HU" and result.quantisation_step == 1.0
    warnings = check_all(vol, result, tmp_path)
    assert not any("not present in standard DICOM IOD" in w for w in warnings)  # pure CT IOD
    back = check_dicomrecon(vol, result)
    assert np.array_equal(back.array, before.array)  # the HU of the source series

    srcs = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in src.iterdir()}
    src0 = next(iter(srcs.values()))
    uids = set()
    for k, f in enumerate(result.files):
        ds = read(f)
        assert ds.InstanceNumber == k + 1
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.DerivationDescription.startswith("dicomrecon")
        for kw in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds[kw].value == src0[kw].value, kw
        assert ds.SeriesInstanceUID == result.series_instance_uid != src0.SeriesInstanceUID
        assert ds.SeriesInstanceUID.startswith("2.25.") and ds.SOPInstanceUID.startswith("2.25.")
        assert len(ds.SOPInstanceUID) <= 64
        uids.add(ds.SOPInstanceUID)
        assert ds.SeriesNumber == 1004 and ds.SeriesDescription == "oblique CT derived"
        assert (ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType) == (-1024, 1, "HU")
        # slice k is the source slice on the same plane, cited with its SOP class
        (item,) = ds.SourceImageSequence
        source = srcs[item.ReferencedSOPInstanceUID]
        assert item.ReferencedSOPClassUID == source.SOPClassUID
        assert np.allclose([float(v) for v in ds.ImagePositionPatient],
                           [float(v) for v in source.ImagePositionPatient], atol=1e-4)
        assert item.SpatialLocationsPreserved == "YES"
        (rs,) = ds.ReferencedSeriesSequence
        assert rs.SeriesInstanceUID == src0.SeriesInstanceUID
        assert ds.RelatedSeriesSequence[0].SeriesInstanceUID == src0.SeriesInstanceUID
    assert len(uids) == len(result.files)


def test_ct_like_dicom_folder_references_the_same_planes(ct_source, tmp_path):
    src, nii, _ = ct_source
    vol = Volume.from_sitk(sitk.ReadImage(nii))     # a bare SimpleITK image + --like DIR
    result = export_series(sitk.ReadImage(nii), tmp_path / "out", like=src,
                           series_number=77, series_description="my derived")
    assert result.sop_class_uid == CT_IMAGE_STORAGE and result.source_references == 5
    assert_valid(result.files)
    check_dicomrecon(vol, result)
    ds = read(result.files[0])
    assert (ds.SeriesNumber, ds.SeriesDescription) == (77, "my derived")
    assert ds.StudyInstanceUID == read(next(src.iterdir())).StudyInstanceUID


def test_float_mr_standalone_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    arr = (rng.normal(200.0, 60.0, (4, 6, 5)) + np.arange(5) * 0.137).astype(np.float32)
    vol = Volume(arr, make_affine(DOUBLE_OBLIQUE, (0.7, 0.9, 3.0), (10.0, -20.5, 33.3)),
                 {})
    result = export_series(vol, tmp_path / "out", modality="MR", patient_name="Doe^Jane",
                           patient_id="P123")
    assert result.reference is None and result.sop_class_uid == SC_IMAGE_STORAGE
    assert not result.values.exact and result.values.stored_dtype == "uint16"
    assert result.quantisation_step == pytest.approx(np.ptp(arr) / 65535, rel=1e-6)
    assert result.values.max_error <= result.quantisation_step / 2 * (1 + 1e-9)
    check_all(vol, result, tmp_path)
    ds = read(result.files[0])
    assert (str(ds.PatientName), ds.PatientID, ds.Modality) == ("Doe^Jane", "P123", "MR")
    assert ds.StudyInstanceUID.startswith("2.25.") and ds.FrameOfReferenceUID.startswith("2.25.")
    assert "SourceImageSequence" not in ds and ds.ConversionType == "WSD"


def test_float_mr_with_reference_is_secondary_capture(tmp_path):
    """Non-integer rescale makes dicomrecon read float32; the MR IOD has no rescale: SC."""
    spec = SeriesSpec(rows=6, columns=5, n_slices=4, modality="MR", slopes=[0.37] * 4,
                      intercepts=[-2.5] * 4, iop=(0, 1, 0, 0, 0, -1), dtype="uint16",
                      series_description="sag T1")
    write_series(spec, str(tmp_path / "mr"))
    vol = dicomrecon.read_volume(str(tmp_path / "mr"))
    assert vol.array.dtype == np.float32
    result = export_series(vol, tmp_path / "out")   # the volume's own source: automatic
    assert result.sop_class_uid == SC_IMAGE_STORAGE and result.modality == "MR"
    assert any("RescaleSlope/Intercept, which the MR IOD" in n for n in result.notes)
    assert result.source_references == 4 and not result.values.exact
    check_all(vol, result, tmp_path)
    ds, src = read(result.files[0]), read(next((tmp_path / "mr").iterdir()))
    assert (ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.PatientID) == \
        (src.StudyInstanceUID, src.FrameOfReferenceUID, src.PatientID)
    assert ds.SeriesDescription == "sag T1 derived"


def test_label_image_stays_exact(tmp_path):
    labels = np.zeros((5, 8, 7), np.uint8)
    labels[1:4, 2:6, 1:5] = 1
    labels[2, 3:5, 2:4] = 7
    img = sitk.GetImageFromArray(labels)
    img.SetSpacing((0.5, 0.5, 1.5))
    img.SetOrigin((-3.0, 4.0, -50.0))
    img.SetDirection(tuple(rotation(0, 30, 0).ravel()))
    vol = Volume.from_sitk(img)
    result = export_series(img, tmp_path / "out")
    assert result.values.exact and not result.values.rescale
    check_all(vol, result, tmp_path)


def test_left_handed_nifti_is_the_same_world_grid(tmp_path):
    """A RAS-style NIfTI (x towards the left of the image) is left-handed in DICOM terms."""
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 40
    vol = Volume(arr, make_affine(np.diag([-1.0, 1.0, 1.0]) @ rotation(5, 0, 0),
                                  (0.8, 0.8, 2.0), (50, -10, 7)))
    path = tmp_path / "in.nii.gz"
    sitk.WriteImage(vol.to_sitk(), str(path))
    result = export_series(path, tmp_path / "out")
    assert result.z_reversed and any("reverse" in n for n in result.notes)
    check_all(vol, result, tmp_path)


def test_rgb_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
    vol = Volume(rgb, make_affine(rotation(0, 0, 25), (0.5, 0.6, 2.0), (1, 2, 3)), {"rgb": True})
    result = export_series(vol, tmp_path / "out")
    assert result.sop_class_uid == SC_IMAGE_STORAGE and result.values is None
    check_all(vol, result, tmp_path)


# ============================================================================================
# Safe output and the command line
# ============================================================================================
def small_volume():
    return Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([1.0, 1.0, 2.0, 1.0]))


def test_never_writes_into_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        export_series(small_volume(), out)
    assert sorted(os.listdir(out)) == ["keep.txt"]
    result = export_series(small_volume(), out, force=True)
    assert sorted(os.listdir(out)) == [os.path.basename(f) for f in result.files]
    assert sorted(os.listdir(tmp_path)) == ["out"]   # no temporary folder left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    export_series(small_volume(), empty)            # an empty folder is fine


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    import dicomrecon.export.build as ex
    calls = []

    def boom(folder, series, plan, k, *a, **kw):
        calls.append(k)
        if k == 1:
            raise OSError(28, "No space left on device")
        return real(folder, series, plan, k, *a, **kw)

    real = ex.write_slice
    monkeypatch.setattr(ex, "write_slice", boom)
    with pytest.raises(OutputError, match="No space left"):
        export_series(small_volume(), tmp_path / "out")
    assert calls == [0, 1] and os.listdir(tmp_path) == []


def test_output_may_not_replace_the_input(ct_source):
    src, nii, _ = ct_source
    with pytest.raises(OutputError, match="input"):
        export_series(str(src), src, force=True)
    with pytest.raises(OutputError, match="input"):
        export_series(str(src), src / "derived")
    assert len(os.listdir(src)) == 5
    nifti = os.path.dirname(nii)
    with pytest.raises(OutputError, match="input"):
        export_series(nii, nifti, force=True)
    before = sorted(os.listdir(nifti))
    export_series(nii, os.path.join(nifti, "dicom"))  # beside the volume file: fine
    assert sorted(os.listdir(nifti)) == sorted(before + ["dicom"])


def test_cli_export(ct_source, tmp_path):
    src, nii, side = ct_source
    r = runner.invoke(app, ["export", nii, "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert f"reference: {side}" in r.output and "CT Image Storage" in r.output
    assert "quantisation step 1" in r.output and "source references: 5 of 5" in r.output
    # the DICOM folder itself as INPUT, standalone with a patient name and ID
    r = runner.invoke(app, ["export", str(src), "-o", str(tmp_path / "b"), "--standalone",
                            "--patient-name", "Anon", "--patient-id", "X1"])
    assert r.exit_code == 0, r.output
    assert "standalone" in r.output and read(tmp_path / "b" / "IM00001.dcm").PatientID == "X1"
    # errors: one line and the documented exit codes
    r = runner.invoke(app, ["export", nii, "-o", str(tmp_path / "a")])
    assert r.exit_code == 6 and "not empty" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "c")])
    assert r.exit_code == 7
    r = runner.invoke(app, ["export", nii, "-o", str(tmp_path / "d"), "--patient-name", "X"])
    assert r.exit_code == 2 and "standalone" in r.output
    assert not (tmp_path / "d").exists()


def test_cli_refuses_a_sheared_nifti(tmp_path):
    arr = np.zeros((3, 4, 5), np.int16)
    aff = make_affine(np.eye(3), (1, 1, 2), (0, 0, 0))
    aff[1, 2] = 0.6
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.transpose(arr, (2, 1, 0)), LPS_TO_RAS @ aff),
             str(tmp_path / "sheared.nii.gz"))
    r = runner.invoke(app, ["export", str(tmp_path / "sheared.nii.gz"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 5 and "sheared" in r.output and "deg from the slice normal" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_patient_options_conflict_with_a_reference(ct_source, tmp_path):
    _, nii, _ = ct_source
    with pytest.raises(ExportUsageError):
        export_series(nii, tmp_path / "o", patient_id="X")


# ============================================================================================
# Real series: convert, export with the sidecar as reference, convert again
# ============================================================================================
@pytest.mark.corpus
@pytest.mark.parametrize("folder, sop_class", [
    ("d2n_mr_hitachi_oblique39", MR_IMAGE_STORAGE),          # oblique MR, int16
    ("ct_philips_s21610_s3010_tilt16p5", CT_IMAGE_STORAGE),  # tilt resampled on conversion
])
def test_real_series_convert_export_convert(corpus, folder, sop_class, tmp_path):
    first = convert(str(corpus / folder), str(tmp_path / "first"))
    (out1,) = first.outputs
    side = json.loads(open(out1.sidecar).read())
    result = export_series(out1.path, tmp_path / "dicom")
    assert result.sop_class_uid == sop_class and result.reference == f"sidecar {out1.sidecar}"
    assert result.values.exact
    assert result.source_references == len(result.files)
    assert_valid(result.files[:3] + result.files[-2:])
    second = convert(str(tmp_path / "dicom"), str(tmp_path / "second"))
    (out2,) = second.outputs
    a, b = sitk.ReadImage(out1.path), sitk.ReadImage(out2.path)
    assert np.abs(np.subtract(a.GetOrigin(), b.GetOrigin())).max() <= GEOM_TOL
    assert np.abs(np.subtract(a.GetSpacing(), b.GetSpacing())).max() <= GEOM_TOL
    assert np.abs(np.subtract(a.GetDirection(), b.GetDirection())).max() <= GEOM_TOL
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    ds = read(result.files[0])
    src = read(os.path.join(side["source"]["input"], side["source_slices" if "source_slices"
                                                           in side else "slices"][0]["file"]))
    for kw in ("PatientName", "PatientID", "StudyInstanceUID"):
        assert ds[kw].value == src[kw].value
    if src.get("FrameOfReferenceUID"):
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
