"""Real tilted / irregular / gappy corpus series, checked against the source slices themselves.

For an output plane that coincides with a source slice, every output voxel's world position
is projected onto that source slice with the slice's *own* IPP, IOP and PixelSpacing (read
here with pydicom, independently of dicomrecon), and the source pixels are interpolated there:
the output must hold that value.  A voxel placed as if the stack were orthogonal would be
millimetres away and fail.
"""

import json
import os

import numpy as np
import pydicom
import pytest

import dicomrecon
from dicomrecon.plan import Policy

pytestmark = pytest.mark.corpus


def source_slice(path):
    ds = pydicom.dcmread(path)
    iop = np.array(ds.ImageOrientationPatient, float)
    px = ds.pixel_array.astype(float) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0))
    return (np.array(ds.ImagePositionPatient, float), iop[:3], iop[3:],
            np.array(ds.PixelSpacing, float), px)


def bilinear(img, c, r):
    ny, nx = img.shape
    inside = (c >= 0) & (c <= nx - 1) & (r >= 0) & (r <= ny - 1)
    c, r = np.clip(c, 0, nx - 1), np.clip(r, 0, ny - 1)
    c0 = np.minimum(np.floor(c).astype(int), nx - 2)
    r0 = np.minimum(np.floor(r).astype(int), ny - 2)
    fc, fr = c - c0, r - r0
    corners = [img[r0, c0], img[r0, c0 + 1], img[r0 + 1, c0], img[r0 + 1, c0 + 1]]
    top = corners[0] * (1 - fc) + corners[1] * fc
    bot = corners[2] * (1 - fc) + corners[3] * fc
    local_range = np.max(corners, axis=0) - np.min(corners, axis=0)  # ~ |gradient| per pixel
    return top * (1 - fr) + bot * fr, inside, local_range


def check_plane(vol, k, sources):
    """Output plane k against its source files: ``sources`` is [(path, weight)].

    The weights must put the plane where it is along the normal (from each file's own IPP),
    and every voxel must hold the weighted bilinear interpolation of those files' pixels at
    the voxel's projection onto each of them.
    """
    ny, nx = vol.array.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx]
    world = (vol.affine[:3, 3] + k * vol.affine[:3, 2] + xx[..., None] * vol.affine[:3, 0]
             + yy[..., None] * vol.affine[:3, 1])
    expected = np.zeros((ny, nx))
    grad = np.zeros((ny, nx))
    inside = np.ones((ny, nx), bool)
    plane_pos = 0.0
    for path, w in sources:
        ipp, row, col, ps, px = source_slice(path)
        plane_pos += w * ((ipp - world[0, 0]) @ np.cross(row, col))
        rel = world - ipp
        value, ins, g = bilinear(px, rel @ row / ps[1], rel @ col / ps[0])
        expected += w * value
        grad = np.maximum(grad, g)
        inside &= ins
    assert abs(plane_pos) < 1e-3  # the weights reproduce the plane's place along the normal
    got = vol.array[k].astype(float)
    assert inside.mean() > 0.5
    excess = (np.abs(got - expected) - 0.5)[inside]  # 0.5: rounding back to integer HU
    # The files' IOP cosines are unit only to ~5e-8 (e.g. 0.9588197\\0.2840153), so projecting
    # with them or with the orthonormalised cosines differs by ~3e-5 px over 512 pixels:
    # allow 1e-4 px of position times the local gradient, and float32 arithmetic (1e-3).
    assert np.all(excess <= 1e-3 + 1e-4 * grad[inside]), excess.max()
    return inside


def plane_sources(vol):
    """[(output z, [(source path, weight)])] for every output plane, from the sidecar data."""
    by_uid = {h.sop_instance_uid: h.path for h in vol.metadata["plan"].slices}
    return [(e["z"], [(by_uid[s["sop_instance_uid"]], s["weight"]) for s in e["sources"]])
            for e in vol.metadata["resample"]["output_slices"]]


@pytest.mark.parametrize("folder, tilt", [("ct_ge_tilt18p5_varspacing", 18.5),
                                          ("ct_philips_s21610_s3010_tilt16p5", 16.5)])
def test_real_tilted_ct_lands_on_its_source_pixels(corpus, folder, tilt):
    result = dicomrecon.scan(corpus / folder)
    assert len(result.groups) == 1
    g = result.groups[0]
    assert g.geometry.tilt_deg == pytest.approx(tilt, abs=0.05)
    vol = dicomrecon.read_volume(g)
    d = vol.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6)  # orthogonal output grid
    planes = plane_sources(vol)
    assert len(planes) >= 20
    for k, sources in planes[:: max(1, len(planes) // 8)] + planes[-1:]:
        check_plane(vol, k, sources)
    # the grid spans the acquired slab: first and last slice lie on the first and last plane
    assert [len(planes[0][1]), len(planes[-1][1])] == [1, 1]


def test_stacked_as_orthogonal_would_be_millimetres_off(corpus):
    """The check above can fail: move the output by the tilt shear of one slab and it does."""
    g = dicomrecon.scan(corpus / "ct_philips_s21610_s3010_tilt16p5").groups[0]
    vol = dicomrecon.read_volume(g)
    k, sources = plane_sources(vol)[-1]
    vol.affine = vol.affine.copy()
    vol.affine[:3, 3] += g.geometry.shear * (g.geometry.positions[-1] - g.geometry.positions[0])
    with pytest.raises(AssertionError):
        check_plane(vol, k, sources)


def test_ge_missing_slice_is_interpolated_and_reported(corpus):
    vols = dicomrecon.read_volumes(corpus / "d2n_ct_ge_missing_slice")
    assert len(vols) == 1
    vol = vols[0]
    assert vol.array.shape[0] == 5 and vol.spacing[2] == pytest.approx(5.0, abs=0.01)
    assert "INTERPOLATED_MISSING" in {f.code for f in vol.metadata["plan"].findings}
    for k, sources in plane_sources(vol):
        check_plane(vol, k, sources)
    blended = [e for e in vol.metadata["resample"]["output_slices"] if len(e["sources"]) == 2]
    assert len(blended) == 1 and [s["weight"] for s in blended[0]["sources"]] == [0.5, 0.5]


def test_kits_second_image_at_one_position_kept_and_holes_not_filled(corpus, tmp_path):
    """CT28.dcm has CT26.dcm's position and pixels but its own SOPInstanceUID: another image,
    not a copy (issue 8), so it is written alone as a partial repeat, never dropped silently."""
    r = dicomrecon.convert(corpus / "dnp_ct_kits_dupe_positions", tmp_path, fmt="nii")
    report = json.loads((tmp_path / "dicomrecon-report.json").read_text())
    assert report["skipped_files"] == []
    assert len(r.outputs) >= 3  # split at the 100+ mm holes, plus the repeat
    for o in r.outputs:
        side = json.loads(open(o.sidecar).read())
        if side["reconstruction"] == "resample":
            assert side["resample"]["spacing_after_mm"] < 100
        if [s["file"] for s in side.get("source_slices", side["slices"])] == ["CT28.dcm"]:
            assert "PARTIAL_VOLUME" in {f["code"] for f in side["findings"]}
    # every source image is used exactly once
    used = []
    for o in r.outputs:
        side = json.loads(open(o.sidecar).read())
        used += [s["file"] for s in side.get("source_slices", side["slices"])]
    assert sorted(used) == sorted(os.listdir(corpus / "dnp_ct_kits_dupe_positions"))


def test_preserve_on_real_tilt_keeps_source_positions(corpus, tmp_path):
    r = dicomrecon.convert(corpus / "ct_philips_s21610_s3010_tilt16p5", tmp_path, fmt="nrrd",
                           policy=Policy(tilt="preserve"))
    side = json.loads(open(r.outputs[0].sidecar).read())
    aff = np.array(side["volume"]["affine_lps"])
    for z in (0, len(side["slices"]) // 2, len(side["slices"]) - 1):
        ipp = np.array(side["slices"][z]["image_position_patient"])
        file_ipp = np.array(pydicom.dcmread(
            corpus / "ct_philips_s21610_s3010_tilt16p5" / side["slices"][z]["file"],
            stop_before_pixels=True).ImagePositionPatient, float)
        assert np.allclose(ipp, file_ipp)
        assert np.allclose(aff[:3, 3] + z * aff[:3, 2], file_ipp, atol=1e-3)
