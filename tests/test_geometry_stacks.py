"""The stack geometry moved into geometry.py (issue 14), checked with literal positions."""

import doctest

import numpy as np
import pytest

from dicomrecon import affines, geometry as geo


def test_doctests_of_the_geometry_module():
    assert doctest.testmod(geo, raise_on_error=False).failed == 0
    assert doctest.testmod(affines, raise_on_error=False).failed == 0  # moved out of geometry


def test_normal_positions_follow_cross_row_column():
    iop = [0, 1, 0, 0, 0, -1]  # sagittal: row A->P, column S->I, normal = row x col = (-1, 0, 0)
    np.testing.assert_allclose(geo.normal_positions([[10, 0, 0], [12, 5, 7]], iop), [-10, -12])
    assert geo.normal_positions([[0, 0, 0]], [1, 0, 0, 1, 0, 0]) is None  # parallel cosines


def test_clusters_runs_and_gaps_with_literals():
    assert geo.position_clusters([0.0, 0.004, 2.0, 2.02, 4.0], 0.01) == [[0, 1], [2], [3], [4]]
    assert geo.position_clusters([5.0], 0.01) == [[0]]
    # steps 2, 2, 3, 3, 2.01: a 1 % tolerance keeps 2.01 with nothing (new run after 3s)
    pos = np.cumsum([0, 2, 2, 3, 3, 2.01])
    assert geo.regular_runs(pos, 0.01) == [[0, 1, 2], [3, 4], [5]]
    assert geo.regular_runs(pos, 0.6) == [[0, 1, 2, 3, 4, 5]]
    runs, gaps = geo.split_at_gaps([0.0, 1.0, 2.0, 5.5, 6.5, 10.0], 1.0, 3.0)
    assert runs == [[0, 1, 2], [3, 4], [5]] and gaps == [3.5, 3.5]
    assert geo.split_at_gaps([0.0, 1.0], 1.0, 3.0) == ([[0, 1]], [])


def test_grid_affines_with_literals():
    o, _ = geo.check_orientation([1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(geo.placeholder_affine((0.8, 0.6), 3.0),
                                  np.diag([0.6, 0.8, 3.0, 1.0]))
    np.testing.assert_array_equal(geo.placeholder_affine(None, -1), np.eye(4))
    # a stack tilted 45 deg in y: every slice 2 mm along z and 2 mm along y
    ipps = [[-5, -5 + 2 * k, 10 + 2 * k] for k in range(4)]
    aff = geo.sheared_affine(o, (0.5, 0.25), ipps)
    np.testing.assert_allclose(aff, [[0.25, 0, 0, -5], [0, 0.5, 2, -5], [0, 0, 2, 10], [0, 0, 0, 1]])
    for k, ipp in enumerate(ipps):  # every slice origin is exactly index (0, 0, k)
        np.testing.assert_allclose(affines.apply_affine(aff, [0, 0, k]), ipp)
    np.testing.assert_allclose(geo.plane_lattice_origin(o, (0.5, 0.25), [1, 2, 3], -4, 2),
                               [0.0, 3.0, 3.0])


def test_match_planes_needs_one_exact_plane_per_target():
    iop, ps, size = [1, 0, 0, 0, 1, 0], [0.5, 0.5], (8, 8)
    planes = dict(planes_iop=[iop] * 3, planes_ipp=[[0, 0, 2], [0, 0, 0], [0, 0, 1]],
                  planes_ps=[ps] * 3, planes_shape_yx=[size] * 3)
    assert geo.match_planes(**planes, iop=iop, pixel_spacing=ps, shape_yx=size,
                            ipps=[[0, 0, 0], [0, 0, 1], [0, 0, 2.0005]]) == [1, 2, 0]
    assert geo.match_planes(**planes, iop=iop, pixel_spacing=ps, shape_yx=size,
                            ipps=[[0, 0, 0.01]]) is None           # off the plane
    assert geo.match_planes(**planes, iop=iop, pixel_spacing=ps, shape_yx=(8, 9),
                            ipps=[[0, 0, 0]]) is None               # other matrix
    loose = geo.Tolerances(plane_match_mm=0.02)
    assert geo.match_planes(**planes, iop=iop, pixel_spacing=ps, shape_yx=size,
                            ipps=[[0, 0, 0.01]], tol=loose) == [1]


@pytest.mark.parametrize("field", ["same_grid_mm", "plane_match_mm", "uncovered_mm",
                                   "spacing_rel", "duplicate_mm"])
def test_every_tolerance_is_a_field_of_tolerances(field):
    assert getattr(geo.DEFAULT_TOLERANCES, field) > 0
