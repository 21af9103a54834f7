"""Each output format, read back by independent readers (nibabel, SimpleITK), in world space."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dicomrecon.affines import LPS_TO_RAS
from dicomrecon.errors import OutputError
from dicomrecon.writers import (FORMATS, json_text, quaternion_from_rotation, write_json,
                                write_volume)


def oblique_affine():
    a = np.eye(4)
    c, s = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    a[:3, :3] = rot @ np.diag([0.7, 0.9, 2.5])
    a[:3, 3] = [-100.5, 20.25, 33.0]
    return a


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["int16", "uint16", "float32", "uint8", "int32"])
def test_format_round_trip_through_simpleitk(tmp_path, fmt, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.integers(0, 200, (5, 6, 7)) - (50 if dtype in ("int16", "int32", "float32") else 0)).astype(dtype)
    aff = oblique_affine()
    path = str(tmp_path / f"v.{fmt}")
    write_volume(path, arr, aff, fmt)
    img = sitk.ReadImage(path)
    assert np.array_equal(sitk.GetArrayFromImage(img), arr)
    assert sitk.GetArrayFromImage(img).dtype == arr.dtype
    assert np.allclose(img.GetOrigin(), aff[:3, 3], atol=1e-4)
    assert np.allclose(img.GetSpacing(), [0.7, 0.9, 2.5], atol=1e-5)
    assert np.allclose(np.reshape(img.GetDirection(), (3, 3)) * [0.7, 0.9, 2.5], aff[:3, :3], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [f"v.{fmt}"]  # no temp file left


@pytest.mark.parametrize("fmt", ["nii", "nii.gz"])
def test_nifti_sform_and_qform_agree_in_ras(tmp_path, fmt):
    arr = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    aff = oblique_affine()
    path = tmp_path / f"v.{fmt}"
    write_volume(str(path), arr, aff, fmt)
    img = nib.load(str(path))
    hdr = img.header
    assert hdr["sform_code"] == 1 and hdr["qform_code"] == 1
    ras = LPS_TO_RAS @ aff
    assert np.allclose(hdr.get_sform(), ras, atol=1e-4)
    assert np.allclose(hdr.get_qform(), ras, atol=1e-4)
    # nibabel's array is indexed [x, y, z]; ours is (z, y, x)
    assert np.array_equal(np.asarray(img.dataobj), arr.transpose(2, 1, 0))


def test_reflected_direction_gets_qfac_minus_one(tmp_path):
    aff = np.diag([0.5, 0.5, -2.0, 1.0])  # det < 0 after the RAS flip too
    path = tmp_path / "r.nii"
    write_volume(str(path), np.zeros((2, 3, 4), np.int16), aff, "nii")
    hdr = nib.load(str(path)).header
    assert np.allclose(hdr.get_qform(), LPS_TO_RAS @ aff)
    assert hdr["pixdim"][0] in (-1, 1)


@pytest.mark.parametrize("seed", range(20))
def test_quaternion_reproduces_random_rotations(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    (b, c, d), qfac = quaternion_from_rotation(q)
    a = np.sqrt(max(0.0, 1 - b * b - c * c - d * d))
    r = np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                  [2*(b*c+a*d), a*a+c*c-b*b-d*d, 2*(c*d-a*b)],
                  [2*(b*d-a*c), 2*(c*d+a*b), a*a+d*d-c*c-b*b]])
    r[:, 2] *= qfac
    assert np.allclose(r, q, atol=1e-9)


def test_sheared_grid_nifti_keeps_exact_sform_and_zero_qform(tmp_path):
    aff = np.eye(4)
    aff[1, 2] = 0.6  # z axis leans along y: a sheared (tilted) grid
    path = tmp_path / "s.nii"
    write_volume(str(path), np.zeros((3, 4, 5), np.int16), aff, "nii")
    hdr = nib.load(str(path)).header
    assert hdr["qform_code"] == 0 and hdr["sform_code"] == 1
    assert np.allclose(hdr.get_sform(), LPS_TO_RAS @ aff)


def test_sheared_grid_is_refused_by_mha(tmp_path):
    aff = np.eye(4)
    aff[1, 2] = 0.6
    with pytest.raises(OutputError, match="sheared"):
        write_volume(str(tmp_path / "s.mha"), np.zeros((3, 4, 5), np.int16), aff, "mha")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import dicomrecon.writers as w

    def boom(fp, array, progress=None, hasher=None):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(w, "_write_array", boom)
    with pytest.raises(OutputError, match="No space left"):
        write_volume(str(tmp_path / "v.nii"), np.zeros((2, 2, 2), np.int16), np.eye(4), "nii")
    assert list(tmp_path.iterdir()) == []


def test_json_is_atomic_and_valid(tmp_path):
    write_json(str(tmp_path / "a.json"), {"x": np.float32(1.5), "a": np.arange(3)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "a": [0, 1, 2]}


def test_write_progress_reaches_the_total(tmp_path):
    calls = []
    arr = np.zeros((40, 256, 256), np.int16)  # 5 MiB: one or more chunks
    write_volume(str(tmp_path / "p.nii.gz"), arr, np.eye(4), "nii.gz",
                 progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (arr.nbytes, arr.nbytes)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize("fmt", FORMATS)
def test_digest_is_the_sha256_of_the_file_written(tmp_path, fmt):
    """The digest comes from the bytes as they are written, never by reading the file back:
    it must equal the sha256 of the whole file (header and every chunk), or be None where the
    compressor makes the bytes."""
    import hashlib
    import dicomrecon.writers as w
    arr = np.arange(3 * 50 * 70, dtype=np.int16).reshape(3, 50, 70)
    path = tmp_path / f"d.{fmt}"
    w_chunk = w.CHUNK
    try:
        w.CHUNK = 4096  # several write calls
        digest = write_volume(str(path), arr, np.diag([0.5, 0.5, 2.0, 1.0]), fmt, digest=True)
    finally:
        w.CHUNK = w_chunk
    if fmt == "nii.gz":
        assert digest is None
    else:
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert write_volume(str(tmp_path / f"e.{fmt}"), arr, np.eye(4), fmt) is None


def test_json_digest_and_layout(tmp_path):
    """json_text is JSON that reads back as json.dumps's would; flat records and lists of
    numbers take one line each; write_json's digest is the file's sha256."""
    import hashlib
    obj = {"volume": {"shape": [2, 3, 4], "affine": [[1.0, 0.0], [0.0, 1.0]], "empty": {},
                      "none": [], "np": np.arange(2), "f": np.float64(0.25)},
           "slices": [{"file": "a\u00e9.dcm", "ipp": [0.0, 1.5, -2.0], "frame": None},
                      {"file": "b.dcm", "ipp": [0.0, 1.5, -1.0], "frame": 2}],
           "nested": [{"deep": {"x": 1}}, [1, [2]]], "flag": True, 7: "int key"}
    plain = json.loads(json.dumps(obj, default=lambda o: o.tolist()))
    text = json_text(obj)
    assert json.loads(text) == plain
    lines = text.splitlines()
    assert '    "shape": [2, 3, 4],' in lines
    assert '    {"file": "b.dcm", "ipp": [0.0, 1.5, -1.0], "frame": 2}' in lines
    assert '      [1.0, 0.0],' in lines
    digest = write_json(str(tmp_path / "s.json"), obj, digest=True)
    assert digest == hashlib.sha256((tmp_path / "s.json").read_bytes()).hexdigest()
    assert json.loads((tmp_path / "s.json").read_text()) == plain
    assert write_json(str(tmp_path / "t.json"), obj) is None
