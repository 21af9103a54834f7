"""The pure geometry layer, fed literal positions: no files, no ITK."""

import numpy as np
import pytest

from dicomrecon import affines, geometry as geo

AXIAL = [1, 0, 0, 0, 1, 0]


def stack(n, step=2.0, normal=(0, 0, 1), origin=(0, 0, 0), shear=(0, 0, 0)):
    k = np.arange(n)[:, None]
    return np.asarray(origin, float) + k * step * (np.asarray(normal, float) + np.asarray(shear, float))


def codes(report):
    return {f.code for f in report.findings}


def test_orientation_normal_is_row_cross_col():
    o, f = geo.check_orientation([0, 1, 0, 0, 0, -1])  # sagittal
    assert f == []
    assert np.allclose(o.normal, np.cross([0, 1, 0], [0, 0, -1]))
    assert np.allclose(o.normal, [-1, 0, 0])


@pytest.mark.parametrize("iop, code", [
    ([1, 0, 0, 0, 0.9, 0], "IOP_NOT_UNIT"),
    ([1, 0, 0, 0.1, 1, 0], "IOP_NOT_ORTHOGONAL"),
    ([1, 0, 0, 0, 1], "IOP_INVALID"),
    ([1, 0, np.nan, 0, 1, 0], "IOP_INVALID"),
])
def test_bad_orientation_is_an_error_naming_tag_and_value(iop, code):
    o, f = geo.check_orientation(iop)
    assert o is None
    assert code in {x.code for x in f}
    assert all(x.severity == geo.ERROR for x in f)
    assert "(0020,0037)" in f[0].message and "Image Orientation (Patient)" in f[0].message


def test_small_rounding_in_iop_is_accepted_and_orthonormalised():
    o, f = geo.check_orientation([1, 0.0004, 0, 0, 0.99995, 0.0003])
    assert f == []
    assert abs(np.dot(o.row, o.col)) < 1e-12
    assert np.isclose(np.linalg.norm(o.col), 1)


def test_shuffled_positions_are_sorted_along_the_normal():
    ipps = stack(6)
    perm = np.array([3, 0, 5, 1, 4, 2])
    r = geo.analyse_stack(ipps[perm], AXIAL, [0.5, 0.5])
    assert r.ok and r.is_regular_grid
    assert np.array_equal(perm[r.order], np.arange(6))
    assert np.allclose(np.diff(r.positions), 2.0)


def test_sort_uses_the_normal_not_z():
    # Coronal: normal = row x col = (1,0,0) x (0,0,-1) = (0,1,0); z is constant.
    iop = [1, 0, 0, 0, 0, -1]
    ipps = stack(4, step=3.0, normal=(0, 1, 0))[::-1]
    r = geo.analyse_stack(ipps, iop, [1, 1])
    assert np.allclose(r.ipp_sorted[:, 1], [0, 3, 6, 9])
    a = r.affine()
    assert np.allclose(a[:3, 2], [0, 3, 0])
    assert np.allclose(a[:3, 3], [0, 0, 0])


def test_affine_columns_follow_itk_conventions():
    # PixelSpacing = [row spacing, column spacing]; x (column index) moves along the row cosine.
    o, _ = geo.check_orientation(AXIAL)
    a = geo.lps_affine(o, [0.5, 0.8], 2.5, [1, 2, 3])
    assert np.allclose(affines.apply_affine(a, [1, 0, 0]), [1.8, 2, 3])
    assert np.allclose(affines.apply_affine(a, [0, 1, 0]), [1, 2.5, 3])
    assert np.allclose(affines.apply_affine(a, [0, 0, 1]), [1, 2, 5.5])


def test_lps_ras_flip_is_its_own_inverse():
    a = np.arange(16.0).reshape(4, 4)
    a[3] = [0, 0, 0, 1]
    assert np.allclose(affines.lps_to_ras(affines.lps_to_ras(a)), a)
    assert np.allclose(affines.lps_to_ras(a)[0], -a[0])


def test_duplicates_are_reported():
    ipps = np.vstack([stack(5), stack(5)[2:3]])
    r = geo.analyse_stack(ipps, AXIAL, [1, 1])
    assert "DUPLICATE_POSITIONS" in codes(r)
    assert r.spacing.n_duplicates == 1
    assert not r.is_regular_grid


def test_missing_slice_is_counted():
    ipps = np.delete(stack(8), 4, axis=0)
    r = geo.analyse_stack(ipps, AXIAL, [1, 1])
    assert not r.spacing.regular
    assert r.spacing.missing == 1
    assert r.spacing.gaps == [(3, pytest.approx(4.0))]
    assert "IRREGULAR_SPACING" in codes(r)


def test_two_missing_slices_in_one_gap():
    ipps = np.delete(stack(10), [4, 5], axis=0)
    r = geo.analyse_stack(ipps, AXIAL, [1, 1])
    assert r.spacing.missing == 2


def test_non_integer_gap_is_irregular_but_not_missing():
    ipps = np.vstack([stack(5), stack(1, origin=(0, 0, 8 + 3.1))])
    r = geo.analyse_stack(ipps, AXIAL, [1, 1])
    assert not r.spacing.regular and r.spacing.missing == 0


def test_small_jitter_is_regular_and_silent():
    rng = np.random.default_rng(1)
    ipps = stack(20, step=2.0)
    ipps[:, 2] += rng.uniform(-0.002, 0.002, 20)  # 0.2 % of the step
    r = geo.analyse_stack(ipps, AXIAL, [1, 1])
    assert r.spacing.regular and r.is_regular_grid
    assert [f for f in r.findings if f.severity != geo.INFO] == []


@pytest.mark.parametrize("deg", [15.0, -20.0, 3.0])
def test_tilt_is_estimated_from_positions(deg):
    t = np.tan(np.radians(deg))
    ipps = stack(10, step=2.0, shear=(0, t, 0))  # origins drift along y (the column cosine)
    r = geo.analyse_stack(ipps, AXIAL, [0.5, 0.5], gantry_tilt_tag=deg)
    assert r.is_tilted and not r.is_regular_grid
    assert r.tilt_deg == pytest.approx(abs(deg), abs=1e-6)
    assert np.allclose(r.shear, [0, t, 0])
    assert "GANTRY_TILT" in codes(r) and "TILT_TAG_MISMATCH" not in codes(r)


def test_tilt_in_descending_order_is_the_same_tilt():
    ipps = stack(10, shear=(0, np.tan(np.radians(15)), 0))[::-1]
    r = geo.analyse_stack(ipps, AXIAL, [0.5, 0.5])
    assert r.tilt_deg == pytest.approx(15)


def test_tilt_tag_disagreeing_with_positions_is_reported():
    ipps = stack(10, shear=(0, np.tan(np.radians(10)), 0))
    r = geo.analyse_stack(ipps, AXIAL, [0.5, 0.5], gantry_tilt_tag=20.0)
    assert "TILT_TAG_MISMATCH" in codes(r)


def test_tilt_tag_on_a_straight_stack_is_noted_not_an_error():
    r = geo.analyse_stack(stack(5), AXIAL, [0.5, 0.5], gantry_tilt_tag=12.0)
    assert not r.is_tilted and r.ok
    f = [x for x in r.findings if x.code == "TILT_TAG_MISMATCH"]
    assert f and f[0].severity == geo.INFO and "(0018,1120)" in f[0].message


def test_inplane_drift_below_a_tenth_of_a_pixel_is_straight():
    ipps = stack(10)
    ipps[:, 0] += np.linspace(0, 0.04, 10)  # 0.04 mm over the stack, pixel 0.5 mm
    r = geo.analyse_stack(ipps, AXIAL, [0.5, 0.5])
    assert not r.is_tilted and r.is_regular_grid


def test_wandering_positions_are_an_error():
    ipps = stack(6)
    ipps[3, 0] += 5.0
    r = geo.analyse_stack(ipps, AXIAL, [0.5, 0.5])
    assert not r.ok and "INCONSISTENT_POSITIONS" in codes(r)
    with pytest.raises(ValueError, match="not a regular"):
        r.affine()


def test_invalid_pixel_spacing_is_an_error_naming_the_tag():
    r = geo.analyse_stack(stack(3), AXIAL, [0, 1])
    assert not r.ok
    assert any("(0028,0030)" in f.message for f in r.findings)


def test_single_slice_uses_the_given_spacing():
    r = geo.analyse_stack(stack(1, origin=(5, 6, 7)), AXIAL, [1, 1])
    assert r.is_regular_grid
    assert np.allclose(r.affine(single_slice_spacing=3.0)[:3, 2], [0, 0, 3])


def test_obliquity():
    o, _ = geo.check_orientation([1, 0, 0, 0, np.cos(0.3), np.sin(0.3)])
    assert geo.obliquity_deg(o.normal) == pytest.approx(np.degrees(0.3))


def test_report_is_json_ready():
    import json
    r = geo.analyse_stack(np.delete(stack(8), 4, axis=0), AXIAL, [1, 1], gantry_tilt_tag=0.0)
    d = r.to_dict()
    json.dumps(d)
    assert d["spacing"]["missing"] == 1
    assert d["tilt_deg_from_tag"] == 0.0


def test_header_tag_table_matches_the_dicom_dictionary():
    """header_model.TAG_TABLE is a literal (no pydicom import on the CLI path): check it."""
    import pydicom.datadict as dd
    from dicomrecon.header_model import TAG_TABLE
    for kw, (tag, vr, name) in TAG_TABLE.items():
        assert dd.tag_for_keyword(kw) == tag, kw
        assert dd.dictionary_VR(tag) == vr, kw
        assert dd.dictionary_description(tag) == name, kw


def test_median_is_numpys():
    """geometry.median (used instead of np.median for its import cost) gives np.median's bits,
    NaN included."""
    import numpy as np
    from dicomrecon.geometry import median
    rng = np.random.default_rng(1)
    for n in range(1, 40):
        for _ in range(20):
            x = rng.normal(size=n) * 10.0 ** rng.integers(-3, 4)
            if rng.random() < 0.1:
                x[rng.integers(n)] = np.nan
            ours, theirs = median(x), float(np.median(x))
            assert ours == theirs or (np.isnan(ours) and np.isnan(theirs)), x
