"""QC report (issue 13): pages for real corpus conversions, plot data against the source
headers read with pydicom, orientation letters against affines.patient_orientation, and the
pages opened in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pydicom
import pytest

import dicomrecon
from dicomrecon.affines import patient_orientation
from dicomrecon.cli import app
from dicomrecon.geometry import check_orientation, lps_affine
from dicomrecon.plan import Policy
from dicomrecon.qc.model import StackPositions
from dicomrecon.qc.page import render_conversion
from dicomrecon.qc.planes import cuts_of, mid_planes, plane_letters
from dicomrecon.qc.positions import position_data

import matplotlib  # noqa: E402,F401  (the [qc] extra, installed by .ci/run: fail, never skip)

#: folder -> (what it exercises, convert options)
FOLDERS = {
    "ct_ge_tilt18p5_varspacing": ("tilted, irregular", {}),
    "ct_philips_s21610_s3010_tilt16p5": ("tilted", {}),
    "d2n_ct_ge_missing_slice": ("missing slice", {}),
    "dnp_ct_kits_dupe_positions": ("split, duplicate skipped", {}),
    "ge_fmri_multiphase_4d": ("4D", {"policy": Policy(merge_4d=True)}),
    "d2n_mr_rgb_j2k": ("RGB", {}),
    "ct_philips_s21570_session_mixed": ("refused, multi-series", {}),
    "table_ge_exam1486_flat_mixed": ("multi-series", {}),
}


@pytest.fixture(scope="module")
def pages(corpus, tmp_path_factory):
    """Every folder converted once and its QC page written."""
    out = {}
    for folder, (_, kw) in FOLDERS.items():
        outdir = tmp_path_factory.mktemp(folder)
        dicomrecon.convert(corpus / folder, outdir, **kw)
        out[folder] = render_conversion(str(outdir))
    return out


VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Page(HTMLParser):
    """The images, ids and internal links of a page; every element must be closed in order."""

    def __init__(self):
        super().__init__()
        self.imgs, self.ids, self.links, self.open = [], set(), [], []

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)
        a = dict(attrs)
        assert "id" not in a or a["id"] not in self.ids, f"duplicate id {a['id']}"
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])


def parse(path) -> _Page:
    p = _Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    assert not p.open, f"unclosed elements {p.open}"
    return p


def check_src(src: str, folder: str) -> None:
    if src.startswith("data:"):
        m = re.fullmatch(r"data:image/(png|jpeg|svg\+xml);base64,([A-Za-z0-9+/=]+)", src)
        assert m, f"invalid data URI {src[:40]}"
        base64.b64decode(m.group(2), validate=True)
        return
    assert not re.match(r"[a-z]+://", src), f"network image {src}"
    path = os.path.join(folder, src)
    assert os.path.isfile(path), f"missing image {src}"
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{src} is not a PNG"


@pytest.mark.corpus
@pytest.mark.parametrize("folder", list(FOLDERS))
def test_page_is_valid_and_complete(pages, folder):
    page = pages[folder]
    qcdir = os.path.dirname(page.path)
    report = json.load(open(os.path.join(page.conversion.outdir, "dicomrecon-report.json")))
    html = open(page.path, encoding="utf-8").read()
    doc = parse(page.path)
    assert doc.imgs, "no image on the page"
    for img in doc.imgs:
        check_src(img["src"], qcdir)
        assert img.get("loading") == "lazy" and int(img["width"]) > 0 and int(img["height"]) > 0
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert set(doc.links) <= doc.ids, "a summary link points nowhere"
    # one section per written volume, per refused group, and every skipped file listed
    assert len([i for i in doc.ids if re.fullmatch(r"v\d+", i)]) == len(report["outputs"])
    assert len([i for i in doc.ids if re.fullmatch(r"r\d+", i)]) == len(report["refused"])
    assert len([i for i in doc.ids if re.fullmatch(r"s\d+", i)]) == len(report["skipped_files"])
    for r in report["refused"]:
        for reason in r["reasons"]:
            assert reason["message"].replace("'", "&#x27;") in html
    for s in report["skipped_files"]:
        assert s["reason"].replace("'", "&#x27;") in html
    for k, o in enumerate(report["outputs"], start=1):
        side = json.load(open(os.path.join(page.conversion.outdir, o["sidecar"])))
        for f in side["findings"]:
            assert f["code"] in html
        r = page.rendered[k - 1]
        assert len(r.planes) == 3 and r.thumb is not None and not r.errors, r.errors


def _sidecar(page, k):
    with open(page.conversion.volumes[k].sidecar) as f:
        return json.load(f)


def _pydicom_positions(side: dict):
    """Sorted positions along the normal and IPPs, from the source files themselves."""
    info = side["volumes"][0] if "volumes" in side else side
    rows = info.get("source_slices") or info["slices"]
    ipps, normal = [], None
    for s in rows:
        ds = pydicom.dcmread(os.path.join(side["source"]["input"], s["file"]),
                             stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        ipps.append(np.array(ds.ImagePositionPatient, float))
    ipps = np.array(ipps)
    d = ipps @ normal
    order = np.argsort(d, kind="stable")
    return d[order], ipps[order], iop


@pytest.mark.corpus
@pytest.mark.parametrize("folder", ["ct_ge_tilt18p5_varspacing",
                                    "ct_philips_s21610_s3010_tilt16p5",
                                    "d2n_ct_ge_missing_slice", "dnp_ct_kits_dupe_positions",
                                    "ge_fmri_multiphase_4d"])
def test_position_plot_data_equal_the_source_positions(pages, folder):
    page = pages[folder]
    for k, r in enumerate(page.rendered):
        side = _sidecar(page, k)
        assert r.plot is not None and r.plot_data is not None
        plotted = r.plot_data.positions
        np.testing.assert_allclose(plotted, side["geometry"]["slice_positions_mm"], atol=1e-9)
        d, ipps, iop = _pydicom_positions(side)
        np.testing.assert_allclose(plotted, d, atol=1e-4)
        np.testing.assert_allclose(r.plot_data.steps, np.diff(d), atol=1e-4)
        rel = ipps - ipps[0]
        np.testing.assert_allclose(r.plot_data.offsets, np.c_[rel @ iop[:3], rel @ iop[3:]],
                                   atol=1e-4)


@pytest.mark.corpus
def test_tilt_missing_and_split_are_drawn(pages):
    # GE tilt 18.5 deg: the origin drifts along the column by tan(18.5 deg) per mm
    r = pages["ct_ge_tilt18p5_varspacing"].rendered[0]
    slope = np.polyfit(r.plot_data.positions, r.plot_data.offsets[:, 1], 1)[0]
    assert abs(abs(slope) - np.tan(np.radians(18.5))) < 1e-3
    assert "irregular" in r.plot_data.kinds
    assert r.comparison is not None and r.before is not None and r.after is not None
    assert r.comparison.fill_px > 0  # the de-tilted grid's corners lie outside the slices
    # GE missing slice: one step of two slices, interpolated output slice(s) marked
    r = pages["d2n_ct_ge_missing_slice"].rendered[0]
    assert r.plot_data.kinds.count("missing") == 1 and r.plot_data.missing.sum() == 1
    assert r.comparison.interpolated.sum() >= 1
    # KiTS: split into parts; each part's plot shows where the others were split off
    kits = pages["dnp_ct_kits_dupe_positions"]
    parts = [r for r, v in zip(kits.rendered, kits.conversion.volumes) if v.status == "split"]
    assert len(parts) == 4
    assert all(len(r.plot_data.splits) == 3 for r in parts)


@pytest.mark.corpus
def test_4d_volume_shows_the_last_t_and_the_mid_slice_across_t(corpus, tmp_path):
    """The 4D section (GE DWI: b = 0 then b = 1000) shows the mid-planes at t = 0 and at the
    last t, and the mid-slice across t; each shown slice holds the values of the source file
    the sidecar names for that t and z (read with pydicom), and convert --qc (kept in memory)
    draws the same pictures as qc OUTDIR (read from the file)."""
    from dicomrecon.qc import Collector, preload, write_qc
    src, policy = corpus / "d2n_ge_dwi_b1000_4slice", Policy(merge_4d=True)
    preload()
    keep = Collector()
    dicomrecon.convert(src, tmp_path / "kept", policy=policy, on_output=keep,
                       on_decoded=keep.decoded)
    write_qc(str(tmp_path / "kept"), keep.kept)
    dicomrecon.convert(src, tmp_path / "read", policy=policy)
    page = render_conversion(str(tmp_path / "read"))
    (r,), (vol,) = page.rendered, page.conversion.volumes
    side = _sidecar(page, 0)
    nt, nz = vol.n_fourth, vol.shape[2]
    assert nt == 2 and len(r.last_planes) == 3 and len(r.strip) == len(r.cuts.strip) == 2
    assert [t for t, _ in r.cuts.strip] == [0, 1]

    def source_slice(t):
        row = [s for s in side["volumes"][t]["slices"] if s["z"] == nz // 2][0]
        ds = pydicom.dcmread(os.path.join(side["source"]["input"], row["file"]))
        return ds.pixel_array * float(getattr(ds, "RescaleSlope", 1)) + \
            float(getattr(ds, "RescaleIntercept", 0))

    assert not np.allclose(source_slice(0), source_slice(1))  # b = 0 and b = 1000 differ
    for t, values in r.cuts.strip:
        np.testing.assert_allclose(values, source_slice(t), atol=1e-3)
    np.testing.assert_allclose(r.cuts.last.z, source_slice(nt - 1), atol=1e-3)
    html = open(page.path, encoding="utf-8").read()
    assert f"last t = {nt - 1}" in html and "across the 4th axis" in html
    kept, read = tmp_path / "kept" / "qc" / "img", tmp_path / "read" / "qc" / "img"
    names = sorted(p.name for p in kept.iterdir())
    assert names == sorted(p.name for p in read.iterdir()) and "v1_t1.png" in names
    for name in names:
        assert (kept / name).read_bytes() == (read / name).read_bytes(), name


@pytest.mark.corpus
def test_sheared_corpus_volume_page(corpus, tmp_path):
    """A tilted CT kept as acquired (--tilt preserve): the planes holding the slice axis are
    drawn as parallelograms (outside painted) and the page says so."""
    dicomrecon.convert(corpus / "ct_philips_s21610_s3010_tilt16p5", tmp_path,
                       policy=Policy(tilt="preserve"))
    page = render_conversion(str(tmp_path))
    sheared = [(r, v) for r, v in zip(page.rendered, page.conversion.volumes)
               if v.reconstruction == "sheared"]
    assert sheared
    for r, v in sheared:
        assert not r.errors and "world geometry" in r.planes[0].title + r.planes[1].title \
            + r.planes[2].title
    html = open(page.path, encoding="utf-8").read()
    assert "The grid is sheared" in html
    for img in parse(page.path).imgs:
        check_src(img["src"], os.path.dirname(page.path))


def test_missing_and_duplicate_steps_are_classified():
    pos = np.array([0.0, 2.0, 4.0, 4.0, 8.0, 10.0, 13.0])
    sp = StackPositions("t", np.c_[np.zeros((7, 2)), pos], pos, np.array([1.0, 0, 0]),
                        np.array([0, 1.0, 0]), np.array([0, 0, 1.0]), nominal=2.0)
    d = position_data(sp)
    assert d.kinds == ["regular", "regular", "duplicate", "missing", "regular", "irregular"]
    assert d.missing.tolist() == [0, 0, 0, 1, 0, 0]


# --------------------------------------------------------------------------------------------
# Orientation letters
SERIES = {  # IOP -> expected letters (left, right, top, bottom) of the slice plane
    "axial": ([1, 0, 0, 0, 1, 0], ("R", "L", "A", "P")),
    "sagittal": ([0, 1, 0, 0, 0, -1], ("A", "P", "H", "F")),
    "coronal": ([1, 0, 0, 0, 0, -1], ("R", "L", "H", "F")),
    # tilted 25 deg about x: the column runs posterior and down
    "oblique": ([1, 0, 0, 0, np.cos(np.radians(25)), -np.sin(np.radians(25))],
                ("R", "L", "AH", "PF")),
}


@pytest.mark.parametrize("name", list(SERIES))
def test_orientation_letters(name):
    iop, expected = SERIES[name]
    o, _ = check_orientation(iop)
    affine = lps_affine(o, (0.7, 0.5), 2.0, np.array([-40.0, 30.0, 12.0]))
    shape = (9, 12, 10)  # nz, ny, nx
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = np.einsum("ab,bzyx->zyxa", affine[:3, :3], np.stack([i, j, k])) + affine[:3, 3]
    planes = mid_planes(cuts_of(world), affine)  # each voxel holds its own LPS position
    for p in planes:
        letters = p.letters
        assert [letters["right"], letters["bottom"]] == patient_orientation(p.h_dir, p.v_dir)
        assert [letters["left"], letters["top"]] == patient_orientation(-p.h_dir, -p.v_dir)
        # the letters match the pixels: moving right / down goes where the letter says
        right = p.values[:, -1].mean(axis=0) - p.values[:, 0].mean(axis=0)
        down = p.values[-1].mean(axis=0) - p.values[0].mean(axis=0)
        for vec, word in ((right, letters["right"]), (down, letters["bottom"])):
            main = int(np.argmax(np.abs(vec)))
            assert word[0] == ("RL", "AP", "FH")[main][int(vec[main] > 0)]
    assert tuple(planes[0].letters[e] for e in ("left", "right", "top", "bottom")) == expected


def _world_volume(affine, shape):
    """(nz, ny, nx, 3): every voxel holds its own LPS position."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.einsum("ab,bzyx->zyxa", affine[:3, :3], np.stack([i, j, k])) + affine[:3, 3]


def test_sheared_grid_is_drawn_in_world_geometry():
    """A tilted CT kept as acquired: the slice axis (z column) drifts 0.7 mm along the column
    (A/P) per 2 mm slice.  Each picture must be a true map of its plane: moving right goes
    along h_dir only and down along v_dir only, by the stated mm per pixel, for every pixel
    inside the grid; an index-space picture (rows not shifted) fails this by 0.7 mm per row."""
    o, _ = check_orientation([1, 0, 0, 0, 1, 0])
    affine = lps_affine(o, (0.7, 0.5), 2.0, np.array([-40.0, 30.0, 12.0]))
    affine[:3, 2] = [0.0, 0.7, 2.0]  # sheared: z = IPP step, not the slice normal
    shape = (9, 12, 10)
    planes = mid_planes(cuts_of(_world_volume(affine, shape)), affine)
    assert planes[0].outside is None  # the slice plane itself is not sheared
    for p in planes[1:]:
        inside = ~p.outside if p.outside is not None else np.ones(p.values.shape[:2], bool)
        rows, cols = np.nonzero(inside)
        world = p.values[rows, cols]
        along_h = world @ p.h_dir - cols * p.spacing[0]
        along_v = world @ p.v_dir - rows * p.spacing[1]
        assert np.ptp(along_v) < 1e-6
        assert np.ptp(along_h) <= p.spacing[0] + 1e-6  # row shifts rounded to whole pixels
        assert np.ptp(world @ np.cross(p.h_dir, p.v_dir)) < 1e-6  # a flat plane
        assert abs(p.h_dir @ p.v_dir) < 1e-12
    x_plane = planes[2]  # holds the column (A/P) and the z column: true sagittal
    assert x_plane.outside is not None and x_plane.outside.any()
    assert "world geometry" in x_plane.title
    assert [x_plane.letters[e] for e in ("left", "right", "top", "bottom")] == ["A", "P", "H", "F"]


def test_plane_letters_doctest_directions():
    assert plane_letters(np.array([0, 1.0, 0]), np.array([0, 0, -1.0])) == {
        "left": "A", "right": "P", "top": "H", "bottom": "F"}


# --------------------------------------------------------------------------------------------
# A real browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless chromium (fresh profile) for the module, every off-file request refused
    and recorded in ``browser.outside``."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=chromium(), headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        ctx.outside = []
        ctx.route("**/*", lambda route: route.continue_()
                  if route.request.url.startswith("file://")
                  else (ctx.outside.append(route.request.url), route.abort()))
        yield ctx
        ctx.close()


def open_in_chromium(ctx, page_path, shot):
    """Load the page and scroll every (lazy) image into view; return (img src ->
    naturalWidth, console errors) and save a full-page screenshot."""
    errors = []
    page = ctx.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(page_path.as_uri(), wait_until="load")
    page.evaluate("async () => { for (const i of document.images) { i.scrollIntoView(); "
                  "await new Promise(r => requestAnimationFrame(r)); } }")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)",
                           timeout=20000)
    widths = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return dict(widths), errors


@pytest.mark.corpus
@pytest.mark.parametrize("folder", ["ct_ge_tilt18p5_varspacing",
                                    "ct_philips_s21570_session_mixed"])
def test_qc_page_in_headless_chromium(pages, browser, tmp_path, folder):
    """Debian's chromium, headless, driven by Playwright from PyPI (no browser download):
    every lazy image is scrolled into view and must decode (naturalWidth > 0), nothing is
    fetched from outside the file system, and the full-page screenshot is not blank."""
    page_path = Path(pages[folder].path)
    shot = tmp_path / "shot.png"
    widths, errors = open_in_chromium(browser, page_path, shot)
    outside = browser.outside
    assert widths, "no image on the page"
    broken = [src for src, w in widths.items() if not w > 0]
    assert not broken, f"images that did not load: {broken}"
    assert not outside, f"the page asked the network for {outside}"
    assert not errors, errors
    from matplotlib.image import imread
    img = imread(str(shot))[..., :3]
    assert img.shape[0] > 900 and img.shape[1] >= 1000
    background = np.all(np.abs(img - img[0, 0]) < 0.02, axis=-1)
    assert background.mean() < 0.95, "the screenshot is (almost) blank"
    assert img.std() > 0.05 and len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 50


# --------------------------------------------------------------------------------------------
@pytest.mark.corpus
def test_cli_convert_qc_scan_qc_and_qc(corpus, tmp_path, monkeypatch):
    from typer.testing import CliRunner
    src = corpus / "d2n_ct_ge_missing_slice"
    runner = CliRunner()
    r = runner.invoke(app, ["convert", str(src), "-o", str(tmp_path / "out"), "--qc"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "qc" / "index.html").is_file()
    shutil.copytree(tmp_path / "out" / "qc", tmp_path / "from_memory")
    r = runner.invoke(app, ["qc", str(tmp_path / "out")])
    assert r.exit_code == 0 and "index.html" in r.output
    # convert --qc kept the planes and the naive stack's plane in memory and drew the plot
    # while writing; qc read the volume back and decoded the sources again: the same pictures
    for name in ("v1_plane0.png", "v1_plane1.png", "v1_plane2.png", "v1_after.png",
                 "v1_before.png", "v1_positions.png"):
        assert (tmp_path / "from_memory" / "img" / name).read_bytes() == \
            (tmp_path / "out" / "qc" / "img" / name).read_bytes(), name
    # scan --qc: slice-position plots only, and it decodes no pixels
    import dicomrecon.decode as dec
    import dicomrecon.engine.read as engine_read  # every pixel read goes through read_stack
    calls = []
    for mod, name in ((dec, "decode"), (dec, "read_stored"), (engine_read, "read_stack")):
        orig = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _o=orig, **k: calls.append(1) or _o(*a, **k))
    r = runner.invoke(app, ["scan", str(src), "--qc", str(tmp_path / "scanqc")])
    monkeypatch.undo()
    assert r.exit_code == 0, r.output
    assert not calls
    doc = parse(tmp_path / "scanqc" / "index.html")
    assert [os.path.basename(i["src"]) for i in doc.imgs] == ["g1_0_positions.png"]
    r = runner.invoke(app, ["qc", str(tmp_path)])  # not a conversion
    assert r.exit_code == 7 and "dicomrecon-report.json" in r.output
