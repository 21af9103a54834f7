"""The ITK/GDCM engine: GDCM header reads, ImageSeriesReader decoding, and the faster ``auto``
path voxel-identical to it on every corpus folder and synthetic series.

Oracles are outside the code under test: pydicom (headers and pixel arrays of the same files)
and SimpleITK's ImageSeriesReader itself.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pydicom
import pytest
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ImplicitVRLittleEndian, RLELossless)
from typer.testing import CliRunner

import dicomrecon
from dicomrecon import decode as decode_mod
from dicomrecon import headers as H
from dicomrecon.header_model import SkipFile
from dicomrecon.cli import app
from dicomrecon.conversion import load_plan
from dicomrecon.discovery import iter_files, scan
from dicomrecon.plan import Policy, plan_group
from dicomrecon.synthetic import SeriesSpec, write_enhanced, write_series

from conftest import corpus_path

try:
    _CORPUS = corpus_path()
    FOLDERS = sorted(p.name for p in _CORPUS.iterdir() if p.is_dir())
except FileNotFoundError:
    _CORPUS, FOLDERS = None, ["<no corpus>"]

AUTO = Policy(no_geometry=True)       # placeholder volumes too: CR MONOCHROME1 J2K, RLE frames
ITK = dataclasses.replace(AUTO, engine="itk")


def _volumes(groups, policy):
    out = {}
    for g in groups:
        for vp in plan_group(g, policy).volumes:
            vol = load_plan(vp, policy=policy)
            out[vp.label] = vol
    return out


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for label in a:
        x, y = a[label], b[label]
        assert x.array.dtype == y.array.dtype, label
        assert x.array.shape == y.array.shape, label
        assert np.array_equal(x.array, y.array), f"{label}: voxels differ between engines"
        assert np.array_equal(x.affine, y.affine), label


# ---------------------------------------------------------------- corpus: itk == auto
@pytest.mark.parametrize("folder", FOLDERS)
def test_corpus_itk_engine_equals_auto(folder, corpus):
    """Every corpus folder: the same groups, skips and voxels with --engine itk as with auto
    (auto reads uncompressed pixels in place; itk decodes every file with ImageSeriesReader)."""
    path = corpus / folder
    sa, si = scan(path, engine="auto"), scan(path, engine="itk")
    assert [g.label for g in sa.groups] == [g.label for g in si.groups]
    assert sa.skipped == si.skipped
    _assert_same(_volumes(sa.groups, AUTO), _volumes(si.groups, ITK))


def test_cli_engine_itk_writes_the_same_file(tmp_path, corpus):
    folder = corpus / "d2n_mr_jpegls"
    outs = []
    for engine in ("auto", "itk"):
        r = CliRunner().invoke(app, ["convert", str(folder), "-o", str(tmp_path / engine),
                                     "-f", "nii", "--engine", engine])
        assert r.exit_code == 0, r.output
        outs.append(sorted((tmp_path / engine).glob("*.nii")))
    assert [p.name for p in outs[0]] == [p.name for p in outs[1]] and outs[0]
    for a, b in zip(*outs):
        assert a.read_bytes() == b.read_bytes()


def test_engine_name_is_checked():
    r = CliRunner().invoke(app, ["scan", ".", "--engine", "fast"])
    assert r.exit_code == 2 and "--engine" in r.output
    with pytest.raises(ValueError, match="engine"):
        Policy(engine="fast")


# ---------------------------------------------------------------- headers: GDCM == pydicom
def test_gdcm_headers_equal_pydicom_headers(corpus):
    """Corpus files (up to 6 per folder, first and last included): the headers from GDCM's
    scanner equal those pydicom reads from the same file (the reasons for skipped files too)."""
    import os
    files = []
    for f in FOLDERS:
        names = iter_files(str(corpus / f))
        files += names[:5] + names[-1:] if len(names) > 6 else names
    via_gdcm = H.read_many(files)
    compared = 0
    for p in files:
        try:
            theirs = H._headers_with_pydicom(p, os.path.getsize(p))
        except SkipFile as exc:
            assert isinstance(via_gdcm[p], SkipFile) and str(via_gdcm[p]) == str(exc), p
            continue
        assert via_gdcm[p] == theirs, p
        compared += 1
    assert compared > 120


def test_headers_shared_between_files_equal_pydicom_headers(tmp_path):
    """Scanned files of one kind share a template header (headers._from_template): every file
    whose values differ from the template's, validly or not, still gets the header (or the
    reason) pydicom's reading of that file gives."""
    import os
    paths = write_series(SeriesSpec(n_slices=8, modality="MR", dtype="uint16"), tmp_path / "s")
    edits = {1: ("PatientName", "Other^Name"), 2: ("ImagePositionPatient", ["1", "2"]),
             3: ("InstanceNumber", b"x1"), 4: ("SeriesDescription", "other text"),
             5: ("ImageOrientationPatient", [0, 1, 0, 0, 0, -1]), 6: ("EchoNumbers", "2"),
             7: ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.4")}
    for i, (kw, value) in edits.items():
        ds = pydicom.dcmread(paths[i])
        if isinstance(value, bytes):  # invalid text pydicom would not store as a value
            tag = pydicom.datadict.tag_for_keyword(kw)
            ds[tag] = pydicom.dataelem.RawDataElement(
                pydicom.tag.Tag(tag), pydicom.datadict.dictionary_VR(tag), len(value), value,
                0, False, True)
        else:
            setattr(ds, kw, value)
        ds.save_as(paths[i])
    files = [str(p) for p in paths]
    via_gdcm = H.read_many(files)
    for p in files:
        try:
            theirs = H._headers_with_pydicom(p, os.path.getsize(p))
        except SkipFile as exc:  # (the values read by GDCM are tuples, pydicom's lists)
            assert isinstance(via_gdcm[p], SkipFile), p
            ours = str(via_gdcm[p]).replace("value of '(", "value of '[")
            assert ours.replace(")' is invalid", "]' is invalid") == str(exc), p
            continue
        assert via_gdcm[p] == theirs, p
    assert isinstance(via_gdcm[files[2]], SkipFile)
    assert via_gdcm[files[1]][0].patient_name == "Other^Name"
    assert via_gdcm[files[6]][0].echo_numbers == "2"


def test_pixel_data_not_last_is_found_by_walking(tmp_path):
    """Pixel data followed by another element: the end-of-file check fails, so the offset is
    found by walking the header instead, never guessed."""
    (src,) = write_series(SeriesSpec(n_slices=1), tmp_path / "a")
    ds = pydicom.dcmread(src)
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 6)  # Data Set Trailing Padding after the pixels
    ds.save_as(src)
    (h,) = H.read_headers(src)
    raw = open(src, "rb").read()
    expect = ds.pixel_array.tobytes()
    assert raw[h.pixel_offset:h.pixel_offset + len(expect)] == expect


# ---------------------------------------------------------------- synthetic series
SYNTHETIC = {
    "ct_int16": SeriesSpec(n_slices=4),
    "mr_uint16_12bit": SeriesSpec(n_slices=3, modality="MR", dtype="uint16", bits_stored=12),
    "per_slice_rescale": SeriesSpec(n_slices=3, modality="MR", dtype="uint16",
                                    slopes=[0.5, 1.25, 2.0], intercepts=[0, -3.5, 10]),
    "big_endian": SeriesSpec(n_slices=3, transfer_syntax=ExplicitVRBigEndian),
    "implicit": SeriesSpec(n_slices=3, transfer_syntax=ImplicitVRLittleEndian),
    "rle": SeriesSpec(n_slices=3, transfer_syntax=RLELossless),
    "monochrome1": SeriesSpec(n_slices=2, modality="MR", dtype="uint16",
                              photometric="MONOCHROME1"),
    "rgb": SeriesSpec(n_slices=2, modality="MR", dtype="uint8", rgb=True),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_itk_engine_equals_auto_and_pydicom(name, tmp_path):
    spec = SYNTHETIC[name]
    write_series(spec, tmp_path)
    auto = dicomrecon.read_volume(tmp_path)
    itk = dicomrecon.read_volume(tmp_path, engine="itk")
    assert auto.array.dtype == itk.array.dtype and np.array_equal(auto.array, itk.array)
    # and both are pydicom's stored values under our rescale rule, slice by slice
    slices = sorted((pydicom.dcmread(p) for p in iter_files(str(tmp_path))),
                    key=lambda d: float(np.dot(d.ImagePositionPatient, [0, 0, 1])))
    for k, ds in enumerate(slices):
        want = ds.pixel_array
        if name == "per_slice_rescale":
            want = want.astype(np.float32) * np.float32(ds.RescaleSlope) \
                + np.float32(ds.RescaleIntercept)
        elif "RescaleIntercept" in ds:
            want = want.astype(np.int64) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(auto.array[k], want), (name, k)


def test_enhanced_multiframe_itk_equals_auto(tmp_path):
    write_enhanced(SeriesSpec(n_slices=5, modality="MR", dtype="uint16"),
                   str(tmp_path / "enh.dcm"), frame_order=[3, 0, 4, 1, 2])
    a = dicomrecon.read_volume(tmp_path)
    b = dicomrecon.read_volume(tmp_path, engine="itk")
    assert np.array_equal(a.array, b.array) and np.array_equal(a.affine, b.affine)


# ---------------------------------------------------------------- formats refused before
def _series_then(tmp_path, change, **spec):
    """A synthetic series written by pydicom, each file then changed by ``change(ds)``."""
    spec = SeriesSpec(n_slices=3, modality="MR", dtype="uint16", **spec)
    files = write_series(spec, tmp_path / "plain")
    ref = dicomrecon.read_volume(tmp_path / "plain")
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        change(ds)
        ds.save_as(tmp_path / f"x{i}.dcm", enforce_file_format=True)
    return ref, [pydicom.dcmread(tmp_path / f"x{i}.dcm") for i in range(len(files))]


def _both_engines(tmp_path):
    vols = [dicomrecon.read_volume(tmp_path, group=None, engine=e, series_uid=None)
            for e in ("auto", "itk")]
    return vols


@pytest.mark.parametrize("engine", ["auto", "itk"])
def test_deflated_transfer_syntax(tmp_path, engine):
    def deflate(ds):
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ref, _ = _series_then(tmp_path, deflate)
    files = [str(tmp_path / f"x{i}.dcm") for i in range(3)]
    vol = dicomrecon.read_volume(files, engine=engine)
    assert np.array_equal(vol.array, ref.array) and np.allclose(vol.affine, ref.affine)


@pytest.mark.parametrize("tag,dtype", [("FloatPixelData", np.float32),
                                       ("DoubleFloatPixelData", np.float64)])
@pytest.mark.parametrize("engine", ["auto", "itk"])
def test_float_pixel_data(tmp_path, tag, dtype, engine):
    def to_float(ds):
        values = ds.pixel_array.astype(dtype) * dtype(0.25) - dtype(7.5)
        del ds.PixelData
        for kw in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope",
                   "RescaleIntercept"):
            if kw in ds:
                delattr(ds, kw)
        ds.BitsAllocated = 32 if dtype is np.float32 else 64
        setattr(ds, tag, values.tobytes())
    ref, written = _series_then(tmp_path, to_float)
    files = [str(tmp_path / f"x{i}.dcm") for i in range(3)]
    vol = dicomrecon.read_volume(files, engine=engine)
    assert vol.array.dtype == dtype
    want = ref.array.astype(dtype) * dtype(0.25) - dtype(7.5)
    assert np.array_equal(vol.array, want) and np.allclose(vol.affine, ref.affine)


@pytest.mark.parametrize("engine", ["auto", "itk"])
def test_bits_allocated_1(tmp_path, engine):
    def to_bits(ds):
        arr = ds.pixel_array
        mask = (arr > np.median(arr)).astype(np.uint8)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
        for kw in ("RescaleSlope", "RescaleIntercept"):
            if kw in ds:
                delattr(ds, kw)
        ds.PixelData = pydicom.pixels.pack_bits(mask)
    ref, written = _series_then(tmp_path, to_bits)
    files = [str(tmp_path / f"x{i}.dcm") for i in range(3)]
    vol = dicomrecon.read_volume(files, engine=engine)
    want = (ref.array > np.median(ref.array, axis=(1, 2), keepdims=True)).astype(np.uint8)
    assert vol.array.dtype == np.uint8 and np.array_equal(vol.array, want)
    assert np.allclose(vol.affine, ref.affine)


def test_bits_allocated_1_multiframe_frames_are_not_byte_aligned(tmp_path):
    """5x3 frames: 15 bits each, so frame 2 starts inside a byte (PS3.5 8.1.1)."""
    spec = SeriesSpec(n_slices=3, rows=5, columns=3, modality="MR", dtype="uint8")
    path = write_enhanced(spec, str(tmp_path / "seg.dcm"))
    ds = pydicom.dcmread(path)
    frames = (ds.pixel_array % 2).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = pydicom.pixels.pack_bits(frames)
    ds.save_as(path)
    a = dicomrecon.read_volume(tmp_path)
    b = dicomrecon.read_volume(tmp_path, engine="itk")
    assert np.array_equal(a.array, b.array)
    assert sorted(map(bytes, a.array)) == sorted(map(bytes, frames))


# ---------------------------------------------------------------- read once, no hidden state
def test_no_module_level_decode_cache():
    assert not hasattr(decode_mod, "_LAST_DECODED")


def test_multiframe_decodes_concurrently(tmp_path):
    """Two multi-frame files decoded in two threads at once each get their own frames."""
    vols = {}
    for name, spec in (("a", SeriesSpec(n_slices=6, modality="MR", dtype="uint16")),
                       ("b", SeriesSpec(n_slices=6, modality="MR", dtype="uint16", seed=3,
                                        origin=(5.0, 5.0, 5.0)))):
        write_enhanced(spec, str(tmp_path / name / "enh.dcm"))
        vols[name] = dicomrecon.read_volume(tmp_path / name)
    got, errors = {}, []

    def run(name):
        try:
            for _ in range(5):
                got.setdefault(name, []).append(dicomrecon.read_volume(tmp_path / name).array)
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(n,)) for n in vols]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for name, arrays in got.items():
        assert all(np.array_equal(a, vols[name].array) for a in arrays)


def test_duplicate_check_pixels_are_reused_by_decode(tmp_path, monkeypatch):
    """A copy of an image (same SOPInstanceUID and header keys, other bytes) is decoded once, in
    the duplicate check (resolve_copies); decode reuses the kept image's pixels."""
    spec = SeriesSpec(n_slices=3)
    files = write_series(spec, tmp_path / "a")
    ds = pydicom.dcmread(files[1])
    ds.StationName = "ELSEWHERE"  # not a key: the file differs, the image does not
    ds.save_as(tmp_path / "a" / "zz_copy.dcm")
    result = scan(tmp_path / "a")
    assert len(result.skipped) == 1 and "an exact copy of" in result.skipped[0][1]
    (g,) = result.groups
    assert len(g.pixels) == 1
    from dicomrecon.engine import read as read_mod
    opened = []
    real = read_mod._read_native_file
    monkeypatch.setattr(read_mod, "_read_native_file",
                        lambda path, ks, out: (opened.append(path), real(path, ks, out)))
    vol = load_plan(plan_group(g, Policy()).volumes[0])
    assert len(opened) == 2 and files[1] not in opened and vol.array.shape[0] == 3


def test_iter_files_lists_what_os_walk_finds(tmp_path):
    """iter_files (a directory listing without a stat per file) lists what os.walk top-down
    and os.path.isfile find, in the same order: links to files followed, links to folders and
    broken links not."""
    import os
    root = tmp_path / "r"
    for d in ("b", "a/c", "a/c/d", "e"):
        (root / d).mkdir(parents=True)
    for f in ("z", "a/y", "a/c/x", "a/c/d/w", "b/v", "e/u", "a/t"):
        (root / f).write_bytes(b"x")
    os.symlink(root / "a/y", root / "b/link_to_file")
    os.symlink(root / "a", root / "e/link_to_folder")
    os.symlink(root / "missing", root / "e/broken")
    expect = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        expect += [os.path.join(dirpath, n) for n in sorted(filenames)
                   if os.path.isfile(os.path.join(dirpath, n))]
    assert iter_files(str(root)) == expect and len(expect) == 8


# ---------------------------------------------------------------- codec fast path == ITK
def _gdcm_encode(src: str, dst: str, syntax: str) -> None:
    """Re-encode one file's pixels with GDCM (an encoder independent of the decoders under
    test); the rest of the header stays the original's (GDCM's writer would drop some)."""
    import gdcm
    reader = gdcm.ImageReader()
    reader.SetFileName(src)
    assert reader.Read(), src
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change(), (src, syntax)
    writer = gdcm.ImageWriter()
    writer.SetFileName(dst)
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write(), dst
    enc, ds = pydicom.dcmread(dst), pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = enc.file_meta.TransferSyntaxUID
    ds.PixelData = enc.PixelData
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.save_as(dst, enforce_file_format=True)


CODEC_SPECS = {
    "int16": SeriesSpec(n_slices=3, rows=20, columns=14),
    # signed 12-bit with negative stored values: the codecs give bit patterns to sign-extend
    "int16_12bit_negative": SeriesSpec(n_slices=3, rows=20, columns=14, bits_stored=12,
                                       intercepts=[0, 0, 0]),
    "uint16_12bit_monochrome1": SeriesSpec(n_slices=3, modality="MR", dtype="uint16",
                                           bits_stored=12, photometric="MONOCHROME1"),
    "uint8": SeriesSpec(n_slices=3, modality="MR", dtype="uint8"),
    "per_slice_rescale": SeriesSpec(n_slices=3, modality="MR", dtype="uint16",
                                    slopes=[0.5, 1.25, 2.0], intercepts=[0, -3.5, 10]),
}
CODEC_SYNTAXES = ["RLELossless", "JPEGLSLossless", "JPEGLosslessProcess14_1",
                  "JPEGLosslessProcess14"]


@pytest.mark.parametrize("syntax", CODEC_SYNTAXES)
@pytest.mark.parametrize("name", sorted(CODEC_SPECS))
@pytest.mark.parametrize("enhanced", [False, True], ids=["single", "multiframe"])
def test_codec_fast_path_equals_itk_and_pydicom(name, syntax, enhanced, tmp_path, monkeypatch):
    """GDCM-encoded RLE / JPEG-LS / JPEG lossless files: ``auto`` decodes them straight from
    their fragments (engine/codecs.py, checked to be used) into the same voxels as
    ImageSeriesReader (``itk``), and as the uncompressed originals."""
    from dicomrecon.engine import codecs
    spec = CODEC_SPECS[name]
    if enhanced:
        plain = [write_enhanced(spec, str(tmp_path / "plain" / "enh.dcm"), frame_order=[2, 0, 1])]
    else:
        plain = write_series(spec, tmp_path / "plain")
    (tmp_path / "enc").mkdir()
    for i, f in enumerate(plain):
        _gdcm_encode(str(f), str(tmp_path / "enc" / f"x{i}.dcm"), syntax)
    used = []
    real = codecs.decode_into
    monkeypatch.setattr(codecs, "decode_into",
                        lambda path, ks, out: used.append(real(path, ks, out)) or used[-1])
    auto = dicomrecon.read_volume(tmp_path / "enc")
    assert used and all(used), "the fast path was not taken"
    itk = dicomrecon.read_volume(tmp_path / "enc", engine="itk")
    ref = dicomrecon.read_volume(tmp_path / "plain")
    assert auto.array.dtype == itk.array.dtype == ref.array.dtype
    assert np.array_equal(auto.array, itk.array) and np.array_equal(auto.array, ref.array)
    assert np.array_equal(auto.affine, itk.affine)


def _fast_decodes(path: str, h) -> bool:
    """Whether the codec fast path decodes single-frame ``path`` (read_stack's call)."""
    from dicomrecon.engine import codecs
    from dicomrecon.engine.native_decode import frame_dtype
    return codecs.decode_into(path, [(0, h)], np.empty((1, h.rows, h.columns), frame_dtype(h)))


def test_codec_fast_path_declines_what_it_cannot_walk(tmp_path):
    """Bytes that are not the data set the walker expects: None (decoded the general way),
    never an exception or a guessed offset."""
    (src,) = write_series(SeriesSpec(n_slices=1), tmp_path / "a")
    _gdcm_encode(str(src), str(tmp_path / "rle.dcm"), "RLELossless")
    (h,) = H.read_headers(str(tmp_path / "rle.dcm"))
    assert _fast_decodes(str(tmp_path / "rle.dcm"), h)
    raw = bytearray((tmp_path / "rle.dcm").read_bytes())
    for cut in (200, len(raw) // 2, len(raw) - 4):
        (tmp_path / "cut.dcm").write_bytes(bytes(raw[:cut]))
        assert not _fast_decodes(str(tmp_path / "cut.dcm"), h)
    raw[128:132] = b"XXXX"
    (tmp_path / "noprefix.dcm").write_bytes(bytes(raw))
    assert not _fast_decodes(str(tmp_path / "noprefix.dcm"), h)


@pytest.mark.parametrize("syntax", CODEC_SYNTAXES)
@pytest.mark.parametrize("cut", [10, 400])
def test_codec_fast_path_refuses_a_cut_stream(syntax, cut, tmp_path):
    """A frame's stream cut short (the item structure intact, the JPEG EOI marker kept) is
    never decoded into wrong voxels by the fast path: it declines, and the general path
    decodes or refuses the file (libjpeg-turbo and imagecodecs' RLE would fill the gap)."""
    from pydicom.encaps import encapsulate, generate_fragmented_frames
    (src,) = write_series(SeriesSpec(n_slices=1, rows=64, columns=64), tmp_path / "a")
    _gdcm_encode(str(src), str(tmp_path / "x.dcm"), syntax)
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    frag = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    short = frag[:-cut - 2] + frag[-2:] if b"\xff\xd9" == frag[-2:] else frag[:-cut]
    ds.PixelData = encapsulate([short + b"\0" * (len(short) % 2)])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(tmp_path / "x.dcm")
    (h,) = H.read_headers(str(tmp_path / "x.dcm"))
    assert not _fast_decodes(str(tmp_path / "x.dcm"), h)


def test_rle_fast_path_takes_exact_segments_only():
    """The RLE frame decoder (PS3.5 G.3) puts segment 0 in the most significant byte and
    declines a segment that gives more or fewer bytes than the image, or a header whose
    segment count does not match the sample size."""
    import struct
    import imagecodecs
    from dicomrecon.engine.codecs import _rle_into
    want = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 300 + 7).astype(np.uint16)
    hi, lo = (want >> 8).astype(np.uint8).tobytes(), (want & 0xFF).astype(np.uint8).tobytes()

    def frame(segments):
        segs = [imagecodecs.packbits_encode(s) for s in segments]
        offsets, pos = [], 64
        for s in segs:
            offsets.append(pos)
            pos += len(s)
        head = struct.pack("<16L", len(segs), *(offsets + [0] * (15 - len(offsets))))
        return head + b"".join(segs)

    into = np.zeros((3, 4), np.uint16)
    assert _rle_into(frame([hi, lo]), into, imagecodecs.packbits_decode)
    assert (into == want).all()
    assert not _rle_into(frame([hi, lo + b"\x01\x02"]), into, imagecodecs.packbits_decode)
    assert not _rle_into(frame([hi, lo[:-1]]), into, imagecodecs.packbits_decode)
    assert not _rle_into(frame([hi]), into, imagecodecs.packbits_decode)
    into8 = np.zeros((3, 4), np.uint8)
    assert _rle_into(frame([lo]), into8, imagecodecs.packbits_decode)
    assert (into8 == (want & 0xFF)).all()


@pytest.mark.parametrize("shape,dtype", [((64, 64), np.int16), ((63, 65), np.uint16),
                                         ((17, 33), np.uint8)])
def test_rle_fast_path_decodes_pydicom_encoded_frames(shape, dtype):
    """Frames RLE-encoded by pydicom's own encoder (another encoder than GDCM's, with its own
    segment padding) decode to exactly the original values."""
    import imagecodecs
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless
    from dicomrecon.engine.codecs import _rle_into
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    arr = rng.integers(max(info.min, -1000), min(info.max, 4000), shape).astype(dtype)
    arr[: shape[0] // 3] = arr[0, 0]  # long runs as well as literals
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = arr.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(info.min < 0)
    ds.compress(RLELossless, arr, encoding_plugin="pydicom")
    into = np.zeros(shape, dtype)
    assert _rle_into(next(generate_frames(ds.PixelData, number_of_frames=1)), into,
                     imagecodecs.packbits_decode)
    assert (into == arr).all()
