"""Vendor diffusion rules and the FSL convention on exact synthetic values (no files)."""

from __future__ import annotations

import numpy as np
import pytest

from dicomrecon.bids.fsl import fsl_bvecs, world_directions
from dicomrecon.vendor.diffusion import (canon_comment, diffusion_of, ge_bvalue,
                                         image_to_patient)
from dicomrecon.writers import nifti_header

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
OBLIQUE = (0.9399, 0.3414, 0.0, -0.3414, 0.9399, 0.0)


@pytest.mark.parametrize("affine", [
    np.eye(4), np.diag([-1.0, 1, 1, 1]), np.diag([2.0, -3, 4, 1]),
    np.array([[0, 0, 2.5, 10], [1.5, 0, 0, -4], [0, -1.5, 0, 7], [0, 0, 0, 1]], float)])
def test_fsl_bvecs_round_trip(affine):
    g = np.array([[0.6, -0.48, 0.64], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(world_directions(fsl_bvecs(g, affine), affine), g, atol=1e-12)


def test_fsl_flips_x_only_for_positive_determinant():
    # LPS identity = RAS diag(-1, -1, 1): det > 0, so x is negated
    np.testing.assert_allclose(fsl_bvecs([[0.6, 0.8, 0]], np.eye(4)).ravel(), [-0.6, 0.8, 0])
    # rows reversed (RAS diag(-1, 1, 1), det < 0): no flip, y follows the reversed axis
    np.testing.assert_allclose(fsl_bvecs([[0.6, 0.8, 0]], np.diag([1.0, -1, 1, 1])).ravel(),
                               [0.6, -0.8, 0])
    assert fsl_bvecs([[np.nan] * 3], np.eye(4)).ravel().tolist() == [0, 0, 0]


def test_ge_bvalue_flag_and_canon_comment():
    assert ge_bvalue([1000001000, 8, 0, 0]) == 1000.0 and ge_bvalue("700") == 700.0
    assert canon_comment("b=1500(0.5,-0.5,0.707)") == (1500.0, (0.5, -0.5, 0.707))
    assert canon_comment("no diffusion") is None


def test_image_frame_rules():
    # GE COL: (x, y, -z) along row, column, normal; ROW: (y, -x, -z)
    np.testing.assert_allclose(image_to_patient((1, 0, 0), AXIAL, "COL", "GE"), (1, 0, 0))
    np.testing.assert_allclose(image_to_patient((0, 0, 1), AXIAL, "COL", "GE"), (0, 0, -1))
    np.testing.assert_allclose(image_to_patient((1, 0, 0), AXIAL, "ROW", "GE"), (0, -1, 0))
    # Canon COL: (y, x, -z), following an in-plane rotation
    np.testing.assert_allclose(image_to_patient((1, 0, 0), OBLIQUE, "COL", "Canon"),
                               np.array(OBLIQUE[3:]) / np.linalg.norm(OBLIQUE[3:]), atol=1e-6)
    assert image_to_patient((1, 0, 0), OBLIQUE, "ROW", "Canon") is None
    assert image_to_patient((1, 0, 0), AXIAL, "", "GE") is None


def test_diffusion_of_sources_trace_and_unknown_frame():
    d = diffusion_of({"DiffusionBValue": 1000.0, "DiffusionGradientOrientation": [0, 0, 2]},
                     "Philips", ("ORIGINAL",), AXIAL)
    assert d.direction == (0, 0, 1) and d.source.startswith("(0018,9087)")
    t = diffusion_of({"Philips_BValue": 800.0, "Philips_DiffusionRL": 0.0,
                      "Philips_DiffusionAP": 0.0, "Philips_DiffusionFH": 0.0},
                     "Philips Medical Systems", ("ORIGINAL",), AXIAL)
    assert t.trace and t.direction is None and t.b == 800.0
    g = diffusion_of({"GE_BValue": [1000, 8, 0, 0], "GE_DiffusionX": "1", "GE_DiffusionY": "0",
                      "GE_DiffusionZ": "0"}, "GE MEDICAL SYSTEMS", (), AXIAL)
    assert g.direction is None and "(0018,1312)" in g.note
    b0 = diffusion_of({"UIH_BValue": 1.25, "UIH_DiffusionDirection": [0, 0, 0]}, "UIH", (), AXIAL)
    assert b0.b == 1.25 and not b0.trace
    assert diffusion_of({}, "SIEMENS", (), AXIAL) is None


def test_nifti_time_axis_only_with_tr():
    import struct
    h = nifti_header((2, 3, 4), np.int16, np.eye(4), nt=5, tr=2.5)
    assert struct.unpack_from("<f", h, 76 + 16)[0] == 2.5 and h[123] == 10
    h = nifti_header((2, 3, 4), np.int16, np.eye(4), nt=5)
    assert struct.unpack_from("<f", h, 76 + 16)[0] == 1.0 and h[123] == 2
