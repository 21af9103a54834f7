"""Issue 4 on the real corpus: each folder gives the right set of volumes.

Expected sets come from the corpus README and the DICOM headers (not from our own output);
4D outputs are compared with dcm2niix's 4D outputs in world coordinates, voxel for voxel.
"""

import glob
import json
import os
import subprocess

import nibabel as nib
import numpy as np
import pytest

from dicomrecon.conversion import convert
from dicomrecon.plan import Policy

from worldcompare import reindex, same_world_grid

pytestmark = pytest.mark.corpus


def shapes(result):
    return sorted(tuple(o.shape_xyz) for o in result.outputs)


def refusal_codes(result):
    return sorted(r["code"] for x in result.refused for r in x.reasons)


# folder: (options, expected output shapes (x, y, z[, t]), expected refusal codes)
EXPECTED = {
    # README: 3-plane localizer [7 PA]+[7 LR]+[7 SI] and a 64x64 fMRI, 5 images per position
    "table_ge_exam1486_flat_mixed": (dict(merge_4d=True),
                                     [(64, 64, 10, 5), (256, 256, 7), (256, 256, 7), (256, 256, 7)], []),
    # README: 96x96x30, 4 images per position, 2 echo times (magnitude + phase x 2 echoes)
    "table_ph_dual_echo": (dict(merge_4d=True), [(96, 96, 30, 2), (96, 96, 30, 2)], []),
    # README: 2 orientations, [2 img LR] + [2 img SI], 288x288
    "d2n_mr_philips_mixed_orientation": ({}, [(288, 288, 2), (288, 288, 2)], []),
    # README: 64x64x10, 10 images per position
    "ge_fmri_multiphase_4d": (dict(merge_4d=True), [(64, 64, 10, 10)], []),
    # README: 5 enhanced files, 86x86x63 each, 5 images per position
    "sag_si_xa30_enhanced_4d": (dict(merge_4d=True), [(86, 86, 63, 5)], []),
    # README: enhanced 64x64x32, 2 images per position (magnitude and a B0 field map)
    "enh_philips_b0": ({}, [(64, 64, 32), (64, 64, 32)], []),
    # README: enhanced 256x256x8
    "d2n_mr_siemens_enhanced_mf": ({}, [(256, 256, 8)], []),
    # README: enhanced CT 512x512x2
    "pyd_ect_enhanced_2frame": ({}, [(512, 512, 2)], []),
    # README: 3 series: 512x512x28 axial, a 256x512 single slice, an exam summary of
    # 512x256 (two copies at one position), 512x650 x2 and 741x650 without geometry
    # (S4010 I10/I20/I30: three surviews, same pixels, own SOPInstanceUID and InstanceNumber:
    # three images, not copies of one; issue 8)
    "ct_philips_s21570_session_mixed": ({}, [(512, 256, 1)] * 4 + [(512, 512, 28)],
                                        ["NO_GEOMETRY", "NO_GEOMETRY"]),
    # README: 4 images, all at one position: four different single images, never stacked
    "d2n_ct_siemens_same_position": ({}, [(512, 512, 1)] * 4, []),
    # README: IPP missing at the top level of all 17 files, each a UIH VFRAME of 20 64x64
    # tiles placed by (0065,1051); dcm2niix (README): 64x64x20x17
    "uih_dti_vframe_no_ipp": ({}, [(64, 64, 20)] * 17, []),
    "uih_dti_dir16_ap": (dict(merge_4d=True), [(64, 64, 20, 17)], []),
    # README: Siemens MOSAIC 384x384, SeriesNumbers 1..9 under one UID; the CSA header says
    # NumberOfImagesInMosaic 35, so 6x6 tiles of 64x64
    "ts_si_mosaic_9ts": ({}, [(64, 64, 35)] * 9, []),
}


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_right_set_of_volumes(corpus, tmp_path, folder):
    opts, expected_shapes, expected_refusals = EXPECTED[folder]
    r = convert(corpus / folder, tmp_path, fmt="nii", policy=Policy(**opts))
    assert shapes(r) == sorted(expected_shapes)
    assert refusal_codes(r) == sorted(expected_refusals)
    for o in r.outputs:  # every output says which key split it from its siblings
        side = json.loads(open(o.sidecar).read())
        if len(r.outputs) > 1 and folder != "ct_philips_s21570_session_mixed":
            keys = side["source"]["split_keys"]
            assert keys and (keys if isinstance(keys, dict) else keys[0])


def test_no_geometry_folder_converts_only_with_the_option(corpus, tmp_path):
    r = convert(corpus / "pyd_cr_monochrome1_j2kr", tmp_path, fmt="nii",
                policy=Policy(no_geometry=True))
    assert len(r.outputs) >= 1
    for o in r.outputs:
        side = json.loads(open(o.sidecar).read())
        assert side["reconstruction"] == "placeholder"
        assert "NO_GEOMETRY_PLACEHOLDER" in {f["code"] for f in side["findings"]}


def dcm2niix_4d(folder, out):
    subprocess.run(["dcm2niix", "-z", "n", "-ba", "n", "-f", "%s_%e_%j", "-o", str(out),
                    str(folder)], check=True, capture_output=True)
    return [f for f in glob.glob(os.path.join(out, "*.nii")) if nib.load(f).ndim == 4]


def test_mosaic_tiles_equal_dcm2niix_in_world_coordinates(corpus, tmp_path):
    """Demosaicing checked against an independent reader: every transfer syntax's copy."""
    ours = convert(corpus / "ts_si_mosaic_9ts", tmp_path / "ours", fmt="nii").outputs
    (tmp_path / "theirs").mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-ba", "n", "-f", "%s", "-o", str(tmp_path / "theirs"),
                    str(corpus / "ts_si_mosaic_9ts")], check=True, capture_output=True)
    assert len(ours) == 9
    for o in ours:
        side = json.loads(open(o.sidecar).read())
        theirs = nib.load(tmp_path / "theirs" / f"{side['source']['series_number']}.nii")
        a = nib.load(o.path)
        mapping = same_world_grid(a.affine, a.shape, theirs.affine, theirs.shape)
        np.testing.assert_array_equal(reindex(theirs.get_fdata(), mapping, a.shape), a.get_fdata())


@pytest.mark.parametrize("folder", ["ge_fmri_multiphase_4d", "sag_si_xa30_enhanced_4d",
                                    "table_ge_exam1486_flat_mixed"])
def test_4d_equals_dcm2niix_4d_in_world_coordinates(corpus, tmp_path, folder):
    ours = [o.path for o in convert(corpus / folder, tmp_path / "ours", fmt="nii",
                                    policy=Policy(merge_4d=True)).outputs
            if nib.load(o.path).ndim == 4]
    (tmp_path / "theirs").mkdir()
    theirs = dcm2niix_4d(corpus / folder, tmp_path / "theirs")
    assert len(ours) == 1 and len(theirs) == 1
    a, b = nib.load(ours[0]), nib.load(theirs[0])
    assert a.shape[3] == b.shape[3]
    mapping = same_world_grid(a.affine, a.shape, b.affine, b.shape)
    da, db = a.get_fdata(), b.get_fdata()
    for t in range(a.shape[3]):  # same volume at each time point, in the same order
        np.testing.assert_allclose(reindex(db[..., t], mapping, a.shape), da[..., t], atol=1e-3)
