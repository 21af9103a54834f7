"""A seeded mutator of small synthetic DICOM series, and the checks every run must pass.

Used by tests/test_fuzz.py (a few hundred cases in CI, ``--fuzz-long`` for more) and
scripts/fuzz.py.  Each case: write a small series, apply 1-3 random mutations to random files
(header values, file-meta transfer syntax, truncation, byte flips, removed tags, VR swaps),
convert, and check the promises of issue 8 (see :func:`check_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct

import numpy as np
import pydicom
from pydicom.uid import RLELossless

from dicomrecon.synthetic import SeriesSpec, write_series

META_TS_TAG = b"\x02\x00\x10\x00"
_LONG = (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR")


def set_meta_transfer_syntax(path: str, uid: str) -> None:
    """Rewrite the file meta (0002,0010) of a Part 10 file, bytes only (the dataset is kept)."""
    data = open(path, "rb").read()
    end = 144 + struct.unpack_from("<L", data, 140)[0]
    pos, out = 144, []
    while pos < end:
        tag, vr = data[pos:pos + 4], data[pos + 4:pos + 6]
        if vr in _LONG:
            ln, head = struct.unpack_from("<L", data, pos + 8)[0], 12
        else:
            ln, head = struct.unpack_from("<H", data, pos + 6)[0], 8
        if tag == META_TS_TAG:
            v = uid.encode("ascii")
            v += b"\0" * (len(v) % 2)
            out.append(tag + b"UI" + struct.pack("<H", len(v)) + v)
        else:
            out.append(data[pos:pos + head + ln])
        pos += head + ln
    meta = b"".join(out)
    with open(path, "wb") as fp:
        fp.write(data[:132] + b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(meta)) + meta
                 + data[end:])


# ------------------------------------------------------------------ mutations
VALUES = {
    "ImagePositionPatient": lambda r: [r.choice(["NaN", "1e308", "-0", "abc", "1"]), 0, 0]
    if r.random() < .3 else [r.uniform(-1e3, 1e3) for _ in range(3)],
    "ImageOrientationPatient": lambda r: r.choice([
        ["NaN", 0, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 0.9, 0.1], [r.uniform(-1, 1) for _ in range(6)], ["inf", 0, 0, 0, 1, 0]]),
    "PixelSpacing": lambda r: r.choice([[0, 0], [-1, 1], ["NaN", 1], [1e-9, 1e-9], [1e9, 1], [2]]),
    "SliceThickness": lambda r: r.choice([0, -3, "NaN", 1e300, "x"]),
    "Rows": lambda r: r.choice([0, 1, 15, 17, 65535, 8]),
    "Columns": lambda r: r.choice([0, 1, 11, 13, 65535, 6]),
    "BitsAllocated": lambda r: r.choice([0, 1, 8, 12, 32, 64, 7]),
    "BitsStored": lambda r: r.choice([0, 1, 12, 16, 17, 40]),
    "HighBit": lambda r: r.choice([0, 11, 15, 31]),
    "PixelRepresentation": lambda r: r.choice([0, 1, 2]),
    "SamplesPerPixel": lambda r: r.choice([0, 2, 3, 4]),
    "PhotometricInterpretation": lambda r: r.choice(["RGB", "PALETTE COLOR", "YBR_FULL", ""]),
    "RescaleSlope": lambda r: r.choice(["NaN", "Inf", "-Inf", "1e300", "0", "1e-300", "-1", "2.5"]),
    "RescaleIntercept": lambda r: r.choice(["NaN", "Inf", "1e20", "-1e38", "0.5", "-1024"]),
    "GantryDetectorTilt": lambda r: r.choice(["NaN", 90, -30, 1e300, 0]),
    "NumberOfFrames": lambda r: r.choice([0, 2, 100]),
    "InstanceNumber": lambda r: r.choice([0, -1, 1, 2 ** 31]),
    "SeriesNumber": lambda r: r.choice([1, 2, 99999]),
}
SYNTAXES = ["1.2.3.4", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.1.99", ""]
REQUIRED = ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
            "Columns", "BitsAllocated", "SeriesInstanceUID", "SOPInstanceUID", "PixelData",
            "SamplesPerPixel", "PixelRepresentation", "RescaleSlope", "SliceThickness"]
VR_SWAPS = {"ImagePositionPatient": "FD", "Rows": "SS", "PixelSpacing": "FL",
            "RescaleSlope": "US", "SOPInstanceUID": "LO", "BitsAllocated": "UL",
            "ImageOrientationPatient": "UN"}


def _edit(path: str, fn) -> None:
    ds = pydicom.dcmread(path, force=True)
    fn(ds)
    ds.save_as(path, enforce_file_format=False)


def mutate(path: str, rng: random.Random) -> str:
    """Apply one random mutation to ``path``; return a short description."""
    kind = rng.choice(["value", "value", "value", "syntax", "truncate", "flip", "remove", "vr"])
    try:
        if kind == "value":
            kw = rng.choice(list(VALUES))
            v = VALUES[kw](rng)
            _edit(path, lambda ds: setattr(ds, kw, v))
            return f"{kw}={v!r}"
        if kind == "syntax":
            uid = rng.choice(SYNTAXES)
            set_meta_transfer_syntax(path, uid)
            return f"TransferSyntaxUID={uid!r}"
        if kind == "remove":
            kw = rng.choice(REQUIRED)
            _edit(path, lambda ds: delattr(ds, kw) if kw in ds else None)
            return f"del {kw}"
        if kind == "vr":
            kw = rng.choice(list(VR_SWAPS))

            def swap(ds):
                if kw in ds:
                    elem = ds[kw]
                    raw = elem.value
                    elem.VR = VR_SWAPS[kw]
                    elem._value = raw if isinstance(raw, bytes) else str(raw).encode()
            _edit(path, swap)
            return f"VR {kw}->{VR_SWAPS[kw]}"
    except Exception as exc:  # pydicom refused to write the mutation: fall back to bytes
        kind = "flip"
        _ = exc
    data = bytearray(open(path, "rb").read())
    if kind == "truncate":
        cut = rng.randrange(0, len(data))
        open(path, "wb").write(bytes(data[:cut]))
        return f"truncate@{cut}"
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(128, len(data))] = rng.randrange(256)
    open(path, "wb").write(bytes(data))
    return "flip"


def make_case(folder: str, seed: int) -> tuple:
    """A small series (sometimes two, sometimes RLE, tilted, or with per-slice rescale) with
    1-3 mutations; returns (input folder, list of mutation descriptions)."""
    rng = random.Random(seed)
    src = os.path.join(folder, "in")
    n = rng.randint(3, 7)
    spec = SeriesSpec(
        rows=rng.choice([8, 16]), columns=rng.choice([6, 12]), n_slices=n,
        tilt_deg=rng.choice([0, 0, 0, 12]), seed=seed, shuffle_names=rng.random() < .5,
        transfer_syntax=RLELossless if rng.random() < .2 else SeriesSpec.transfer_syntax,
        slopes=[rng.choice([1, 1, 0.5]) for _ in range(n)] if rng.random() < .2 else None,
        modality=rng.choice(["CT", "MR"]))
    paths = write_series(spec, os.path.join(src, "a"))
    if rng.random() < .3:
        paths += write_series(SeriesSpec(n_slices=3, series_number=9, seed=seed + 1),
                              os.path.join(src, "b"))
    done = [f"{os.path.basename(p)}: {mutate(p, rng)}"
            for p in rng.sample(paths, rng.randint(1, min(3, len(paths))))]
    return src, done


# ------------------------------------------------------------------ checks
def tree_hash(root: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            h.update(p.encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


#: Findings that explain a departure from a plain stack of the input slices.
DEPARTURES = {"resample": {"IRREGULAR_SPACING", "GANTRY_TILT", "INTERPOLATED_MISSING",
                           "SPLIT_AT_GAP", "SPLIT_AT_MISSING", "DUPLICATE_POSITIONS",
                           "TILT_TAG_MISMATCH", "DAMAGED_SLICE", "SLAB_NOT_COVERED"},
              "sheared": {"GANTRY_TILT"}}


def check_run(exit_code: int, output: str, outdir: str) -> list:
    """Problems with one conversion run (empty when it kept every promise)."""
    problems = []
    if exit_code == 1 or "Traceback" in output or "internal error" in output:
        problems.append(f"exit {exit_code}: {output[-2000:]}")
    if exit_code not in (0, 3, 4, 5):
        problems.append(f"unexpected exit code {exit_code}")
    if not os.path.isdir(outdir):
        return problems
    names = os.listdir(outdir)
    leftovers = [n for n in names if n.startswith(".") or "part" in n or n.endswith(".tmp")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    if exit_code != 3 and "dicomrecon-report.json" not in names:
        problems.append("no dicomrecon-report.json")
    volumes = [n for n in names if n.endswith((".nii", ".nii.gz", ".nrrd", ".mha"))]
    for n in volumes:
        problems += _check_volume(os.path.join(outdir, n), names)
    if "dicomrecon-report.json" in names:
        rep = json.load(open(os.path.join(outdir, "dicomrecon-report.json")))
        if sorted(o["file"] for o in rep["outputs"]) != sorted(volumes):
            problems.append(f"the report's outputs {rep['outputs']} are not the volumes {volumes}")
        if rep.get("exit_code") not in (None, exit_code):
            problems.append(f"the report says exit {rep.get('exit_code')}, the run gave {exit_code}")
    return problems


def _check_volume(path: str, names: list) -> list:
    import SimpleITK as sitk
    stem = os.path.basename(path).split(".")[0]
    if stem + ".json" not in names:
        return [f"{path}: no sidecar"]
    arr = sitk.GetArrayViewFromImage(sitk.ReadImage(path))
    problems = [] if np.isfinite(arr).all() else [f"{path}: non-finite voxels"]
    side = json.load(open(os.path.join(os.path.dirname(path), stem + ".json")))
    codes = {f["code"] for f in side["findings"]}
    if side["reconstruction"] == "stack" and "volumes" not in side and \
            len(side["slices"]) != arr.shape[0]:
        problems.append(f"{path}: a stack of {arr.shape[0]} slices from {len(side['slices'])}")
    wanted = DEPARTURES.get(side["reconstruction"])
    if wanted is not None and not codes & wanted and side["reconstruction"] == "sheared":
        problems.append(f"{path}: {side['reconstruction']} with no finding saying why: {codes}")
    if side["reconstruction"] == "resample" and not codes & DEPARTURES["resample"] and \
            side["policy"]["spacing"] == "median":
        problems.append(f"{path}: resampled with no finding saying why: {codes}")
    return problems
