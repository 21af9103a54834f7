#!/usr/bin/env python
"""Benchmark ``dicomrecon`` against dcm2niix and SimpleITK on one synthetic CT series.

Usage::

    python scripts/benchmark.py                 # 512 x 512 x 1000 slices, 3 repeats
    python scripts/benchmark.py --slices 100 --repeat 1 --warmup 0   # a quick run
    python scripts/benchmark.py --keep /tmp/bench --json bench.json

What it does, in one run:

1. Writes a synthetic CT series (512 x 512 pixels x ``--slices`` files, int16 stored,
   RescaleIntercept -1024, shuffled file names) with the project's own factory
   :mod:`dicomrecon.synthetic`.  The phantom is body-like (air, fat, soft tissue, lungs, spine,
   a contrast-filled vessel, a table) with spatially correlated noise, so that gzip sees
   realistic rather than trivial data; it is deterministic (numpy ``Generator`` seeded by
   ``--seed`` and the slice position).
2. Reads every input file before every run, so that every tool sees a warm page cache (cheap
   when the files are cached; it matters on VMs that page out cold page cache).
3. Times each tool as a child process, ``--repeat`` times after ``--warmup`` untimed rounds,
   interleaved (one run of each tool per round, so slow drift of the machine hits all tools
   alike), and reports the median wall time and the peak resident set size of the child (its
   ``ru_maxrss`` from ``wait4``, read through GNU ``/usr/bin/time`` when present; see
   :func:`run_child` for why not this process's own ``os.wait4``):

   * ``dicomrecon convert -f nii`` and ``-f nii.gz``, and ``-f nii --engine itk``
   * ``dcm2niix -z n`` and ``-z i`` (internal zlib; ``-z y`` when the build lacks ``i``)
   * SimpleITK: ``ImageSeriesReader`` on ``GetGDCMSeriesFileNames`` then ``WriteImage`` (.nii)
   * ``dicomrecon scan --json`` (header scan only), and the raw ``gdcm.Scanner`` reading the
     same tags of the same files in a plain Python process (:data:`GDCM_CHILD`); also the same
     raw scanner after ``import numpy, typer`` (:data:`GDCM_FLOOR_CHILD`): the least any scan
     whose geometry is numpy and whose command line is typer (as the design asks) can take, so
     ``scan / raw`` cannot go below ``floor / raw``, printed beside it

   ``os.sync()`` runs before every timed command so that write-back of the previous run's
   output does not land in the next run's time.
4. Checks that dicomrecon's and dcm2niix's uncompressed NIfTI outputs hold the same voxels on
   the same world grid (nibabel; the voxel grids are matched through the sform affines, which
   may differ by axis flips/permutations).
5. Re-encodes ``--codec-slices`` (300) neighbouring slices with GDCM as RLE, JPEG-LS, JPEG
   lossless (process 14 SV1) and JPEG 2000 lossless, and times ``dicomrecon convert -f nii``
   against ``dcm2niix -z n`` on each, interleaved, with the same voxel check.

Why ratios rather than absolute times: the benchmark machines are shared and noisy (two cores,
other jobs), so an absolute "4.2 s" says little about a change.  Each target is therefore
stated as a ratio against a reference tool measured in the same run on the same warm data
(dcm2niix, SimpleITK) or against the size of the output array, which cancel most of that noise.
A wall-time ratio is the median over rounds of the two tools' times in the same round.
Only the header-scan target is absolute (0.4 s for 1000 files; with ``--slices`` other
than 1000 the time is scaled linearly, which overstates it for small series because the
start-up cost is fixed); it is also stated against the raw ``gdcm.Scanner``.  Missed targets are
reported as FAIL but never change the exit code: the exit code is non-zero only when a tool
fails to run.

The last line printed is one JSON document with every figure (also written to ``--json FILE``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

ROWS = COLUMNS = 512
PIXEL_SPACING = (0.7, 0.7)      # mm: a 358 mm field of view, as a typical body CT
SLICE_STEP = 1.0                # mm

#: Targets (issue 11): (ratio name, comparison, threshold, description)
TARGETS = [
    ("scan_s_per_1000", "<=", 0.4, "dicomrecon scan wall s, per 1000 files"),
    ("scan_vs_gdcm", "<=", 1.3, "dicomrecon scan / raw gdcm.Scanner, same files + tags (paired)"),
    ("nii_vs_dcm2niix", "<=", 1.0, "dicomrecon nii wall / dcm2niix -z n wall (paired)"),
    ("niigz_vs_dcm2niix", "<", 1.0, "dicomrecon nii.gz wall / dcm2niix {z} wall (paired)"),
    ("rle_vs_dcm2niix", "<=", 1.5, "RLE 512x512x{c}: dicomrecon nii / dcm2niix -z n (paired)"),
    ("jpegls_vs_dcm2niix", "<=", 1.5, "JPEG-LS 512x512x{c}: dicomrecon nii / dcm2niix -z n"),
    ("jpeg_vs_dcm2niix", "<=", 1.5, "JPEG lossless 512x512x{c}: dicomrecon nii / dcm2niix -z n"),
    ("j2k_vs_dcm2niix", "<=", 1.5, "J2K lossless 512x512x{c}: dicomrecon nii / dcm2niix -z n"),
    ("itk_vs_auto", "<=", 2.0, "dicomrecon nii --engine itk / --engine auto (paired)"),
    ("rss_vs_array", "<=", 1.2, "dicomrecon nii peak RSS / output array bytes"),
    ("niigz_rss_vs_array", "<", 2.0, "dicomrecon nii.gz peak RSS / output array bytes"),
]

#: Compressed series for the codec rows: name -> (GDCM transfer syntax attribute, label)
CODECS = {
    "rle": ("RLELossless", "RLE"),
    "jpegls": ("JPEGLSLossless", "JPEG-LS"),
    "jpeg": ("JPEGLosslessProcess14_1", "JPEG lossless"),
    "j2k": ("JPEG2000Lossless", "J2K lossless"),
}

#: The raw GDCM scanner, as a user of python-gdcm would read the same tags of the same files:
#: one Scan() over the files, then GetValue() of every tag of every file.
GDCM_CHILD = """\
import os, sys, json, gdcm
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
tags = [gdcm.Tag(t >> 16, t & 0xFFFF) for t in json.loads(sys.argv[2])]
s = gdcm.Scanner()
for t in tags:
    s.AddTag(t)
s.Scan(files)
values = [[s.GetValue(f, t) for t in tags] for f in files if s.IsKey(f)]
print(len(values))
"""


#: The floor of a numpy + typer program: the same scan after importing what ``dicomrecon scan``
#: must import besides gdcm (numpy for the geometry, typer for the command line).
GDCM_FLOOR_CHILD = "import numpy, typer\n" + GDCM_CHILD


SITK_CHILD = """\
import sys
import SimpleITK as sitk
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(sys.argv[1]))
sitk.WriteImage(reader.Execute(), sys.argv[2])
"""


# ============================================================================ synthetic input
def body_phantom(seed: int = 0, noise_hu: float = 12.0) -> Callable[[np.ndarray], np.ndarray]:
    """A CT-like phantom: HU at LPS positions (..., 3) in mm of one axial slice.

    Structures vary slowly along z so that neighbouring slices differ as real ones do.  The
    noise is drawn from a ``Generator`` seeded by ``seed`` and the slice's z, so the series is
    identical from run to run, and smoothed over 2 x 2 pixels (real CT noise is correlated).
    """

    def phantom(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        x = p[..., 0].astype(np.float32)
        y = p[..., 1].astype(np.float32)
        zc = float(p[..., 2].mean())
        rng = np.random.default_rng([seed, int(round(zc * 1000)) & 0xFFFFFFFF])

        def inside(cx, cy, ax, ay):
            return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0

        hu = np.full(x.shape, -1000.0, dtype=np.float32)            # air
        hu[(y > 135) & (y < 150) & (np.abs(x) < 160)] = 250.0        # table
        a = 150 + 12 * np.sin(zc / 95.0)                             # body outline
        b = 105 + 9 * np.cos(zc / 130.0)
        hu[inside(0, 0, a, b)] = -100.0                              # subcutaneous fat
        hu[inside(0, 0, a - 14, b - 12)] = 40.0                      # soft tissue
        chest = 300 <= zc <= 720
        if chest:                                                    # lungs, with vessels
            r = 1 + 0.15 * np.sin(zc / 40.0)
            for cx in (-62.0, 62.0):
                lung = inside(cx, -5, 45 * r, 65 * r)
                hu[lung] = -860.0 + 40 * np.sin(x[lung] / 6.0) * np.cos(y[lung] / 9.0)
            hu[inside(20, -15, 40, 35)] = 45.0                       # heart
        else:
            hu[inside(-45, -5, 55, 45)] = 60.0                       # liver / bowel
            hu[inside(55, 20, 22, 35)] = 30.0                        # kidney
        hu[inside(15, 45, 12, 12)] = 200.0                           # aorta (contrast)
        hu[inside(0, 75, 20, 18)] = 1200.0                           # vertebra: cortex
        hu[inside(0, 75, 16, 14)] = 350.0                            #           marrow
        white = rng.standard_normal(x.shape, dtype=np.float32)
        noise = (white + np.roll(white, 1, 0) + np.roll(white, 1, 1)
                 + np.roll(np.roll(white, 1, 0), 1, 1)) * 0.5
        body = hu > -950
        hu += noise * np.where(body, noise_hu, noise_hu * 0.6)
        fov = x ** 2 + y ** 2 > 178.0 ** 2                           # outside the recon circle
        hu[fov] = -1024.0
        return hu

    return phantom


def generate(folder: str, n_slices: int, seed: int):
    """Write the series into ``folder``; returns the SeriesSpec.  Prints progress."""
    from dicomrecon.synthetic import SeriesSpec, write_series

    phantom = body_phantom(seed)
    done = [0]
    t0 = time.perf_counter()
    step = max(1, n_slices // 10)

    def counted(points):  # write_series calls the phantom once per slice, in order
        done[0] += 1
        k = done[0]
        if k % step == 0 or k == n_slices:
            el = time.perf_counter() - t0
            eta = el / k * (n_slices - k)
            print(f"  generating: {k}/{n_slices} slices, {el:.1f} s elapsed, ~{eta:.0f} s left",
                  flush=True)
        return phantom(points)

    centre_z = 500.0  # slices centred on the chest whatever their number
    spec = SeriesSpec(rows=ROWS, columns=COLUMNS, n_slices=n_slices, pixel_spacing=PIXEL_SPACING,
                      slice_step=SLICE_STEP, dtype="int16", shuffle_names=True,
                      origin=(-(COLUMNS - 1) * PIXEL_SPACING[1] / 2,
                              -(ROWS - 1) * PIXEL_SPACING[0] / 2,
                              centre_z - (n_slices - 1) * SLICE_STEP / 2),
                      phantom=counted, series_description="benchmark body CT", seed=seed)
    write_series(spec, folder)
    return spec


def warm_cache(folder: str) -> int:
    """Read every file under ``folder`` once; returns the bytes read."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as fp:
                while chunk := fp.read(1 << 22):
                    total += len(chunk)
    return total


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


# ============================================================================ timing
@dataclass
class Tool:
    key: str
    label: str
    build: Callable[[str, str], list]       # (input folder, output folder) -> argv
    walls: list = field(default_factory=list)
    rss: list = field(default_factory=list)  # bytes
    out_bytes: Optional[int] = None
    error: Optional[str] = None

    @property
    def wall(self) -> Optional[float]:
        return statistics.median(self.walls) if self.walls else None

    @property
    def peak_rss(self) -> Optional[int]:
        return int(statistics.median(self.rss)) if self.rss else None


GNU_TIME = "/usr/bin/time"


def gnu_time() -> Optional[str]:
    """/usr/bin/time if it is GNU time (it has -f %M and -o FILE), else None."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    probe = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True)
    return GNU_TIME if "GNU" in (probe.stdout + probe.stderr) else None


def run_child(argv: list, log_path: str, stdout=subprocess.DEVNULL, timer=None) -> tuple:
    """Run ``argv``; return (wall seconds, peak RSS bytes of the child, exit code).

    The peak RSS is ``ru_maxrss`` of the child from ``wait4``.  It is taken by GNU time
    (``timer``) rather than by this process's own ``os.wait4``, because Linux carries the
    *spawning* process's RSS high-water mark over ``exec`` into the child's ``ru_maxrss``:
    measured from here, every tool would show at least this script's own peak (the series
    generation and the nibabel check make that hundreds of MiB).  GNU time is a ~1 MiB process,
    so the floor of its figure is ~1 MiB.  Without GNU time, ``os.wait4`` is used and the figure
    is an upper bound (see the "RSS floor" line of the report).
    """
    rss_path = log_path + ".rss"
    cmd = [timer, "-f", "%M", "-o", rss_path, "--", *argv] if timer else argv
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=log, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen
    max_kib = usage.ru_maxrss
    if timer:
        with open(rss_path) as fp:  # "Command exited with non-zero status N" may come first
            lines = fp.read().split()
        os.unlink(rss_path)
        max_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return wall, max_kib * 1024, proc.returncode


def run_rounds(tools: list, indir: str, outroot: str, args, timer, tag: str = "") -> dict:
    """Time every tool ``args.repeat`` times after ``args.warmup`` untimed rounds, interleaved;
    returns {tool key: output folder of the first timed run} (kept for the checks)."""
    keep_dirs = {}
    rounds = [("warm-up", None)] * args.warmup + [("timed", k) for k in range(args.repeat)]
    for r, (kind, k) in enumerate(rounds):
        title = (f"warm-up round {r + 1}/{args.warmup} (not timed)" if k is None
                 else f"round {k + 1}/{args.repeat}")
        print(f"{tag}{title}:", flush=True)
        for t in tools:
            if t.error:
                continue
            out = os.path.join(outroot, f"{t.key}-{r}")
            os.makedirs(out)
            warm_cache(indir)   # re-warm: this VM may page out cold page cache between runs
            os.sync()           # the previous run's write-back must not land in this run
            log = os.path.join(outroot, f"{t.key}-{r}.log")
            wall, rss, code = run_child(t.build(indir, out), log, timer=timer)
            if code != 0:
                with open(log, errors="replace") as fp:
                    tail = fp.read()[-2000:]
                t.error = f"exit code {code}: {tail.strip()}"
                last = (tail.strip().splitlines() or [""])[-1]
                print(f"  {t.label:30s} FAILED (exit code {code}: {last})", flush=True)
                continue
            print(f"  {t.label:30s} {wall:7.2f} s  {rss / 2**20:7.0f} MiB", flush=True)
            if k is None:
                shutil.rmtree(out)
                continue
            t.walls.append(wall)
            t.rss.append(rss)
            if k == 0:
                t.out_bytes = folder_bytes(out) if "scan" not in t.key else None
                keep_dirs[t.key] = out
            else:
                shutil.rmtree(out)
    return keep_dirs


def scan_tags_json() -> str:
    """The tags dicomrecon's GDCM scanner reads, as a JSON list of ints (for GDCM_CHILD)."""
    from dicomrecon.headers import SCAN_TABLE
    return json.dumps([0x00020010] + [tag for tag, _, _ in SCAN_TABLE.values()])


def contiguous_names(src: str, n: int) -> list:
    """Names of ``n`` neighbouring slices of ``src`` (lowest ImagePositionPatient z first), so
    that each codec series is one regular stack for both tools."""
    import gdcm
    names = sorted(os.listdir(src))
    paths = [os.path.join(src, x) for x in names]
    scanner = gdcm.Scanner()
    ipp = gdcm.Tag(0x0020, 0x0032)
    scanner.AddTag(ipp)
    scanner.Scan(paths)
    z = [float(scanner.GetValue(p, ipp).split("\\")[2]) for p in paths]
    return sorted(names[i] for i in sorted(range(len(names)), key=z.__getitem__)[:n])


def _fixed_study_time(ds) -> None:
    """GDCM's writer fills an absent StudyDate/StudyTime with the time of writing, which differs
    between files (dcm2niix then splits the series): set one value for all."""
    import gdcm
    for (group, elem), value in (((0x0008, 0x0020), "20260101"), ((0x0008, 0x0030), "120000")):
        de = gdcm.DataElement(gdcm.Tag(group, elem))
        de.SetByteStringValue(value.encode("ascii"))
        ds.Replace(de)


def compress_series(src: str, n: int, folder: str, codec: str) -> int:
    """``n`` neighbouring slices of ``src`` re-encoded by GDCM with ``codec``'s transfer syntax
    into ``folder`` (kept when complete: GDCM's J2K encoder is slow)."""
    import gdcm
    names = contiguous_names(src, n)
    if os.path.isdir(folder) and sorted(os.listdir(folder)) == names:
        return len(names)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    syntax = gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, CODECS[codec][0]))
    for name in names:
        reader = gdcm.ImageReader()
        reader.SetFileName(os.path.join(src, name))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(syntax)
        if not reader.Read():
            raise SystemExit(f"benchmark: GDCM cannot read {name}")
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise SystemExit(f"benchmark: GDCM cannot encode {name} as {codec}")
        _fixed_study_time(reader.GetFile().GetDataSet())
        writer = gdcm.ImageWriter()
        writer.SetFileName(os.path.join(folder, name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise SystemExit(f"benchmark: cannot write {folder}/{name}")
    return len(names)


def codec_benchmark(args, work: str, indir: str, dr: str, dcm2niix: str, timer) -> dict:
    """dicomrecon convert -f nii vs dcm2niix -z n on RLE, JPEG-LS, JPEG lossless and J2K
    lossless copies of the first ``--codec-slices`` slices; {codec: paired ratio}."""
    out = {}
    for codec, (_, label) in CODECS.items():
        folder = os.path.join(work, f"input-{codec}")
        t0 = time.perf_counter()
        n = compress_series(indir, args.codec_slices, folder, codec)
        print(f"{label}: {n} files in {folder} ({folder_bytes(folder) / 2**20:.0f} MiB, "
              f"encoded in {time.perf_counter() - t0:.1f} s)")
        tools = [
            Tool("dicomrecon_nii", f"dicomrecon -f nii ({label})",
                 lambda i, o: [dr, "convert", i, "-o", o, "-f", "nii", "--no-progress", "-q"]),
            Tool("dcm2niix_nii", f"dcm2niix -z n ({label})",
                 lambda i, o: [dcm2niix, "-z", "n", "-o", o, i]),
        ]
        root = os.path.join(work, f"out-{codec}")
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        keep = run_rounds(tools, folder, root, args, timer, tag=f"{label} ")
        agree = _correctness(keep)
        out[codec] = {"ratio": paired(*tools), "dicomrecon_s": tools[0].wall,
                      "dcm2niix_s": tools[1].wall, "errors": [t.error for t in tools if t.error],
                      "agree": None if agree is None else agree.get("agree")}
    return out


def find_executable(name: str) -> str:
    """Prefer the console script beside this interpreter (a pyenv shim adds ~30 ms of bash)."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"benchmark: '{name}' is not on PATH")
    return found


def dcm2niix_binary() -> str:
    """The real dcm2niix binary of the PyPI package (not its Python / pyenv wrappers)."""
    try:
        import dcm2niix
        if os.access(dcm2niix.bin, os.X_OK):
            return dcm2niix.bin
    except ImportError:
        pass
    return find_executable("dcm2niix")


def dcm2niix_gzip_mode(binary: str) -> tuple:
    """('i', label, note) when this build has -z i (internal zlib), else a -z y fallback."""
    out = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout
    zline = next((ln for ln in out.splitlines() if ln.strip().startswith("-z")), "")
    if "i=" in zline:
        return "i", "dcm2niix -z i", f"dcm2niix help: {zline.strip()}"
    pigz = shutil.which("pigz")
    return ("y", "dcm2niix -z y", f"this dcm2niix has no '-z i' ({zline.strip()!r}); fell back to "
            f"-z y ({'pigz at ' + pigz if pigz else 'no pigz on PATH: internal zlib'})")


def source_state(package_dir: str) -> str:
    """Git commit of the measured dicomrecon, and how many of its files differ from it."""
    try:
        head = subprocess.run(["git", "-C", package_dir, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", package_dir, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"git {head}" + (f" + {len(dirty)} uncommitted file(s)" if dirty else "")


# ============================================================================ correctness
def compare_outputs(ours_path: str, theirs_path: str) -> dict:
    """Compare two NIfTI files voxel by voxel on the world grid (scaled values)."""
    import nibabel as nib

    a_img, b_img = nib.load(ours_path, mmap=True), nib.load(theirs_path, mmap=True)
    a_shape, b_shape = a_img.shape, b_img.shape
    res = {"shape_ours": list(a_shape), "shape_dcm2niix": list(b_shape), "agree": False}
    if sorted(a_shape) != sorted(b_shape):
        res["detail"] = f"shapes differ: {a_shape} vs {b_shape}"
        return res
    # voxel index of ours -> voxel index of theirs
    m = np.linalg.inv(b_img.affine) @ a_img.affine
    lin = np.rint(m[:3, :3])
    perm = [int(np.argmax(np.abs(lin[:, i]))) for i in range(3)]
    signed_perm = (sorted(perm) == [0, 1, 2] and np.count_nonzero(lin) == 3
                   and np.allclose(m[:3, :3], lin, atol=1e-3))
    if not signed_perm:
        res["detail"] = "grids differ (not a flip/permutation): index map\n" + str(np.round(m, 4))
        return res
    # build a view of theirs on our grid: axis i of ours is axis perm[i] of theirs
    b = b_img.dataobj.get_unscaled()
    b = np.transpose(b, perm)
    flips = []
    for i in range(3):
        s = lin[perm[i], i]
        expect = 0.0 if s > 0 else a_shape[i] - 1
        if abs(m[perm[i], 3] - expect) > 1e-2:
            res["detail"] = (f"grids are shifted: axis {i} starts at voxel {m[perm[i], 3]:.3f} "
                             f"of dcm2niix's, expected {expect:g}")
            return res
        if s < 0:
            b = np.flip(b, axis=i)
            flips.append("xyz"[i])
    if b.shape != a_shape:
        res["detail"] = f"shapes differ after matching axes: {a_shape} vs {b.shape}"
        return res
    a = a_img.dataobj.get_unscaled()
    sa, ia = _scale(a_img)
    sb, ib = _scale(b_img)
    n_diff, max_diff = 0, 0.0
    for z0 in range(0, a_shape[2], 64):
        va = np.asarray(a[..., z0:z0 + 64], dtype=np.float64) * sa + ia
        vb = np.asarray(b[..., z0:z0 + 64], dtype=np.float64) * sb + ib
        d = np.abs(va - vb)
        n_diff += int(np.count_nonzero(d > 1e-3))
        max_diff = max(max_diff, float(d.max()) if d.size else 0.0)
    res.update(agree=n_diff == 0, differing_voxels=n_diff, max_abs_diff=max_diff,
               axis_map=f"perm {perm}, flipped {''.join(flips) or 'none'}",
               dtype_ours=str(a_img.get_data_dtype()),
               itemsize_ours=int(a_img.get_data_dtype().itemsize), dtype_dcm2niix=str(b_img.get_data_dtype()),
               scaling_dcm2niix=[sb, ib])
    res["detail"] = (f"{'outputs agree' if n_diff == 0 else 'outputs DIFFER'}: shape "
                     f"{tuple(a_shape)}, same world grid ({res['axis_map']} between them), "
                     f"{n_diff} of {a.size} voxels differ (max |diff| {max_diff:g}); "
                     f"dicomrecon {res['dtype_ours']} unscaled, dcm2niix {res['dtype_dcm2niix']} "
                     f"with scl_slope/inter {sb:g}/{ib:g}")
    return res


def _scale(img) -> tuple:
    slope, inter = img.dataobj.slope, img.dataobj.inter
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


# ============================================================================ report
def ratio(a, b):
    return None if a is None or b is None or not b else a / b


def fmt(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


def check(value, op, threshold):
    if value is None:
        return "n/a"
    ok = value <= threshold if op == "<=" else value < threshold
    return "PASS" if ok else "FAIL"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=1000, help="number of slices (default 1000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool (default 3)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds of every tool before the timed ones (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="phantom noise seed (default 0)")
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR (input series and outputs) and keep it afterwards")
    ap.add_argument("--input", metavar="DIR",
                    help="benchmark this existing DICOM folder instead of generating one")
    ap.add_argument("--json", metavar="FILE", help="also save the JSON figures to FILE")
    ap.add_argument("--codec-slices", type=int, default=300,
                    help="slices of the RLE/JPEG-LS/JPEG/J2K copies (default 300; 0: skip)")
    args = ap.parse_args(argv)
    if args.slices < 2 or args.repeat < 1 or args.warmup < 0:
        ap.error("--slices must be >= 2, --repeat >= 1 and --warmup >= 0")

    if args.keep:
        work = os.path.abspath(args.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="dicomrecon-bench-")
    try:
        return _benchmark(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def cached_bytecode(env, work: str):
    """Set ``env`` (a mapping of environment variables) so that Python children cache their
    bytecode in ``work``, as an installed package has it: where PYTHONDONTWRITEBYTECODE is set
    (as on the benchmark machines), each run would otherwise compile dicomrecon's modules again
    (~0.03-0.1 s; matplotlib's import took 1.0 s instead of 0.29 s), a cost no installed copy
    pays and the raw-scanner child does not have.  Returns ``env``."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    return env


def _benchmark(args, work: str) -> int:
    import SimpleITK
    import dicomrecon

    # Every Python child (dicomrecon, SimpleITK, the raw gdcm.Scanner) runs with its bytecode
    # cached (see cached_bytecode)
    cached_bytecode(os.environ, work)

    dcm2niix = dcm2niix_binary()
    dicomrecon_exe = find_executable("dicomrecon")
    z_mode, z_label, z_note = dcm2niix_gzip_mode(dcm2niix)
    dcm_version = subprocess.run([dcm2niix, "--version"], capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1:]
    env = {"python": platform.python_version(), "dicomrecon": dicomrecon.__version__,
           "dcm2niix": dcm_version[0] if dcm_version else "?",
           "simpleitk": SimpleITK.Version.VersionString(), "numpy": np.__version__,
           "cpus": os.cpu_count(), "platform": platform.platform(),
           "dicomrecon_source": source_state(os.path.dirname(dicomrecon.__file__))}
    print("benchmark: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    print(f"  {z_note}")

    # ---- input
    gen_s = None
    if args.input:
        indir = os.path.abspath(args.input)
        n_files = sum(len(fs) for _, _, fs in os.walk(indir))
        print(f"input: {indir} ({n_files} files, not generated)")
    else:
        indir = os.path.join(work, "input")
        if os.path.exists(indir):
            shutil.rmtree(indir)
        print(f"generating {ROWS}x{COLUMNS}x{args.slices} int16 CT series in {indir}")
        t0 = time.perf_counter()
        generate(indir, args.slices, args.seed)
        gen_s = time.perf_counter() - t0
        n_files = args.slices
        print(f"  generated {n_files} files in {gen_s:.1f} s ({gen_s / n_files * 1000:.1f} ms "
              "per slice)")
    t0 = time.perf_counter()
    in_bytes = warm_cache(indir)
    print(f"warm-up read: {in_bytes / 2**20:.0f} MiB in {time.perf_counter() - t0:.2f} s")

    # ---- tools
    dr = dicomrecon_exe
    tools = [
        Tool("dicomrecon_nii", "dicomrecon convert -f nii",
             lambda i, o: [dr, "convert", i, "-o", o, "-f", "nii", "--no-progress", "-q"]),
        Tool("dicomrecon_niigz", "dicomrecon convert -f nii.gz",
             lambda i, o: [dr, "convert", i, "-o", o, "-f", "nii.gz", "--no-progress", "-q"]),
        Tool("dcm2niix_nii", "dcm2niix -z n", lambda i, o: [dcm2niix, "-z", "n", "-o", o, i]),
        Tool("dcm2niix_gz", z_label, lambda i, o: [dcm2niix, "-z", z_mode, "-o", o, i]),
        Tool("sitk_nii", "SimpleITK series -> .nii",
             lambda i, o: [sys.executable, "-c", SITK_CHILD, i, os.path.join(o, "sitk.nii")]),
        Tool("dicomrecon_scan", "dicomrecon scan --json", lambda i, o: [dr, "scan", i, "--json"]),
        Tool("gdcm_scanner", "raw gdcm.Scanner (same tags)",
             lambda i, o: [sys.executable, "-c", GDCM_CHILD, i, scan_tags_json()]),
        Tool("gdcm_scanner_floor", "raw gdcm.Scanner + import numpy, typer",
             lambda i, o: [sys.executable, "-c", GDCM_FLOOR_CHILD, i, scan_tags_json()]),
        Tool("dicomrecon_itk_nii", "dicomrecon -f nii --engine itk",
             lambda i, o: [dr, "convert", i, "-o", o, "-f", "nii", "--no-progress", "-q",
                           "--engine", "itk"]),
    ]
    outroot = os.path.join(work, "out")
    shutil.rmtree(outroot, ignore_errors=True)
    os.makedirs(outroot)
    timer = gnu_time()
    _, floor, _ = run_child(["true"], os.path.join(outroot, "floor.log"), timer=timer)
    print(f"peak RSS via {'GNU time (wait4 of the child)' if timer else 'os.wait4 here (upper bound)'}"
          f"; RSS floor (`true`): {floor / 2**20:.1f} MiB")
    keep_dirs = run_rounds(tools, indir, outroot, args, timer)
    by = {t.key: t for t in tools}
    array_bytes = ROWS * COLUMNS * n_files * 2
    correctness = _correctness(keep_dirs)
    if correctness and "itemsize_ours" in correctness:   # the real output size, if known
        array_bytes = int(np.prod(correctness["shape_ours"])) * correctness["itemsize_ours"]
    figures = _ratios(by, array_bytes, n_files)
    codecs = codec_benchmark(args, work, indir, dr, dcm2niix, timer) if args.codec_slices else {}
    for codec, c in codecs.items():
        figures[f"{codec}_vs_dcm2niix"] = c["ratio"]

    # ---- table
    print()
    print(f"{'tool':32s} {'median s':>9s} {'runs (s)':>22s} {'peak RSS MiB':>13s} "
          f"{'output MiB':>11s}")
    print("-" * 91)
    for t in tools:
        runs = " ".join(f"{w:.2f}" for w in t.walls)
        out_mb = None if t.out_bytes is None else t.out_bytes / 2**20
        print(f"{t.label:32s} {fmt(t.wall):>9s} {runs if not t.error else 'FAILED':>22s} "
              f"{fmt(t.peak_rss and t.peak_rss / 2**20, '.0f'):>13s} {fmt(out_mb, '.0f'):>11s}")
    print(f"\noutput array: {array_bytes / 2**20:.0f} MiB ({ROWS}x{COLUMNS}x{n_files} int16); "
          f"input: {in_bytes / 2**20:.0f} MiB in {n_files} files")
    dtypes = _nifti_dtypes(keep_dirs, ("dicomrecon_nii", "dcm2niix_nii", "sitk_nii"))
    if dtypes:
        print("stored voxel types: " + ", ".join(f"{by[k].label.split(' ')[0]} {v}"
                                                  for k, v in dtypes.items()))
    gz = ratio(by["dcm2niix_gz"].out_bytes, by["dcm2niix_nii"].out_bytes)
    gz_ours = ratio(by["dicomrecon_niigz"].out_bytes, by["dicomrecon_nii"].out_bytes)
    print(f"gzip size / raw size: dcm2niix {fmt(gz, '.3f')}, dicomrecon {fmt(gz_ours, '.3f')} "
          "(incl. JSON sidecars)")
    print()
    print(f"{'target':64s} {'value':>8s} {'goal':>8s}  result")
    print("-" * 92)
    results = {}
    for name, op, thr, desc in TARGETS:
        v = figures.get(name)
        results[name] = check(v, op, thr)
        text = desc.format(z=z_label.split(' ', 1)[1], c=args.codec_slices)
        print(f"{text:64s} {fmt(v):>8s} {op + ' ' + str(thr):>8s}  {results[name]}")
    print(f"  scan: the floor (raw gdcm.Scanner + import numpy, typer) / raw gdcm.Scanner "
          f"{fmt(figures.get('floor_vs_gdcm'))}; dicomrecon scan / that floor "
          f"{fmt(figures.get('scan_vs_floor'))}")
    for codec, c in codecs.items():
        print(f"  {CODECS[codec][1]}: dicomrecon {fmt(c['dicomrecon_s'])} s, dcm2niix "
              f"{fmt(c['dcm2niix_s'])} s (medians); same voxels on the world grid: {c['agree']}")
    print()
    print(f"{'vs SimpleITK (same run)':60s} {'value':>8s}")
    print("-" * 69)
    for name, desc in (("nii_vs_sitk", "dicomrecon nii wall / SimpleITK wall"),
                       ("niigz_vs_sitk", "dicomrecon nii.gz wall / SimpleITK wall"),
                       ("scan_vs_sitk", "dicomrecon scan wall / SimpleITK wall"),
                       ("nii_rss_vs_sitk", "dicomrecon nii peak RSS / SimpleITK peak RSS"),
                       ("niigz_rss_vs_sitk", "dicomrecon nii.gz peak RSS / SimpleITK peak RSS"),
                       ("sitk_vs_dcm2niix", "(reference) SimpleITK wall / dcm2niix -z n wall")):
        print(f"{desc:60s} {fmt(figures.get(name)):>8s}")
    print()
    if correctness:
        print("correctness: " + correctness["detail"])
    else:
        print("correctness: not checked (a .nii output is missing)")

    print()
    rs = resample_benchmark(args.repeat, args.seed)
    print(f"{'resampling a tilted 512x512x300 int16 stack (in memory)':60s} {'value':>8s}")
    print("-" * 69)
    print(f"{'dicomrecon.resample (15 deg tilt) median s':60s} {fmt(rs['dicomrecon_s']):>8s}"
          f"  {check(rs['dicomrecon_s'], '<', 1.0)} (target < 1 s)")
    print(f"{'scipy.ndimage.affine_transform order 1, same shear, median s':60s} "
          f"{fmt(rs['scipy_s']):>8s}")
    print(f"{'dicomrecon / scipy':60s} {fmt(rs['ratio']):>8s}")
    print(f"{'max |dicomrecon - scipy| inside the slab (HU)':60s} {fmt(rs['max_diff']):>8s}")

    failed = [t for t in tools if t.error]
    for t in failed:
        print(f"ERROR: {t.label}: {t.error}", file=sys.stderr)
    doc = {
        "resample": rs,
        "env": env, "n_files": n_files, "rows": ROWS, "columns": COLUMNS,
        "repeat": args.repeat, "generate_s": gen_s, "input_bytes": in_bytes,
        "array_bytes": array_bytes, "dcm2niix_gzip": z_label,
        "rss_method": "GNU time %M" if timer else "os.wait4 (upper bound)", "rss_floor_bytes": floor,
        "tools": {t.key: {"label": t.label, "wall_s_median": t.wall, "wall_s": t.walls,
                          "peak_rss_bytes": t.peak_rss, "peak_rss_bytes_runs": t.rss,
                          "output_bytes": t.out_bytes, "error": t.error} for t in tools},
        "ratios": figures, "targets": results, "correctness": correctness, "codecs": codecs,
    }
    line = json.dumps(doc, default=str)
    if args.json:
        with open(args.json, "w") as fp:
            fp.write(line + "\n")
    print(line)
    return 1 if failed else 0


def resample_benchmark(repeat: int, seed: int) -> dict:
    """Time dicomrecon's resampler on a 15 deg tilted 512x512x300 int16 stack, against
    scipy.ndimage.affine_transform (trilinear) doing the same shear correction in this run.

    The stack is in memory (decoding is measured above), so this times the resampling alone.
    """
    import scipy.ndimage as ndi
    from dicomrecon import geometry as geo
    from dicomrecon.resample import resample, target_grid
    from dicomrecon.synthetic import SeriesSpec

    spec = SeriesSpec(rows=512, columns=512, n_slices=300, pixel_spacing=(0.7, 0.7),
                      slice_step=1.0, tilt_deg=15.0)
    g = geo.analyse_stack(spec.ipps(), spec.iop, spec.pixel_spacing)
    rng = np.random.default_rng(seed)
    src = rng.integers(-1000, 1500, (300, 512, 512)).astype(np.int16)
    grid = target_grid(g.orientation, spec.pixel_spacing, g.ipp_sorted, (512, 512))
    ours, theirs = [], []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        res = resample(src, grid, fill=-1024)
        ours.append(time.perf_counter() - t)
        # the same mapping for scipy: output (z, y, x) -> source (k, row, column)
        shift_px = np.tan(np.radians(15.0)) * 1.0 / 0.7  # rows per slice
        y0 = grid.src_offsets[0, 1]
        matrix = np.array([[1, 0, 0], [-shift_px, 1, 0], [0, 0, 1]], float)
        t = time.perf_counter()
        ref = ndi.affine_transform(src, matrix, offset=(0, -y0, 0), output_shape=grid.shape_zyx,
                                   order=1, cval=-1024, output=np.float32, prefilter=False)
        theirs.append(time.perf_counter() - t)
    inside = (res.array != -1024) & (ref != -1024)
    diff = float(np.abs(res.array[inside] - np.rint(ref[inside])).max()) if inside.any() else None
    a, b = float(np.median(ours)), float(np.median(theirs))
    return {"dicomrecon_s": a, "scipy_s": b, "ratio": a / b, "max_diff": diff,
            "shape_zyx": list(grid.shape_zyx)}


def paired(a: Tool, b: Tool) -> Optional[float]:
    """Median over rounds of a's wall / b's wall in the same round (robust to drift)."""
    if a.error or b.error or not a.walls or len(a.walls) != len(b.walls):
        return None
    return statistics.median(x / y for x, y in zip(a.walls, b.walls))


def _ratios(by: dict, array_bytes: int, n_files: int) -> dict:
    r = {k: t.peak_rss for k, t in by.items()}
    scan = by["dicomrecon_scan"].wall
    return {
        "nii_vs_dcm2niix": paired(by["dicomrecon_nii"], by["dcm2niix_nii"]),
        "niigz_vs_dcm2niix": paired(by["dicomrecon_niigz"], by["dcm2niix_gz"]),
        "rss_vs_array": ratio(r["dicomrecon_nii"], array_bytes),
        "niigz_rss_vs_array": ratio(r["dicomrecon_niigz"], array_bytes),
        "scan_s": scan,
        "scan_s_per_1000": None if scan is None else scan * 1000 / n_files,
        "nii_vs_sitk": paired(by["dicomrecon_nii"], by["sitk_nii"]),
        "niigz_vs_sitk": paired(by["dicomrecon_niigz"], by["sitk_nii"]),
        "scan_vs_sitk": paired(by["dicomrecon_scan"], by["sitk_nii"]),
        "nii_rss_vs_sitk": ratio(r["dicomrecon_nii"], r["sitk_nii"]),
        "niigz_rss_vs_sitk": ratio(r["dicomrecon_niigz"], r["sitk_nii"]),
        "sitk_vs_dcm2niix": paired(by["sitk_nii"], by["dcm2niix_nii"]),
        "scan_vs_gdcm": paired(by["dicomrecon_scan"], by["gdcm_scanner"]),
        "floor_vs_gdcm": paired(by["gdcm_scanner_floor"], by["gdcm_scanner"]),
        "scan_vs_floor": paired(by["dicomrecon_scan"], by["gdcm_scanner_floor"]),
        "itk_vs_auto": paired(by["dicomrecon_itk_nii"], by["dicomrecon_nii"]),
    }


def _nifti_dtypes(keep_dirs: dict, keys) -> dict:
    import nibabel as nib

    out = {}
    for k in keys:
        found = glob.glob(os.path.join(keep_dirs.get(k, "/nonexistent"), "*.nii"))
        if len(found) == 1:
            hdr = nib.load(found[0]).header
            slope, inter = hdr.get_slope_inter()
            scaled = "" if slope in (None, 1) and inter in (None, 0) else \
                f" (scl {slope:g}/{inter:g})"
            out[k] = f"{hdr.get_data_dtype()}{scaled}"
    return out


def _correctness(keep_dirs: dict) -> Optional[dict]:
    ours = glob.glob(os.path.join(keep_dirs.get("dicomrecon_nii", "/nonexistent"), "*.nii"))
    theirs = glob.glob(os.path.join(keep_dirs.get("dcm2niix_nii", "/nonexistent"), "*.nii"))
    if len(ours) != 1 or len(theirs) != 1:
        return None
    try:
        return compare_outputs(ours[0], theirs[0])
    except Exception as exc:  # a check, not a tool: report and go on
        return {"agree": False, "detail": f"comparison failed: {type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
