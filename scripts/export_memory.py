#!/usr/bin/env python
"""Peak memory of ``dicomrecon export`` against the size of the volume it writes.

Usage::

    python scripts/export_memory.py                  # 512 x 512 x 600 int16 CT
    python scripts/export_memory.py --slices 100     # quicker
    python scripts/export_memory.py --keep /tmp/em --json em.json

It writes a synthetic CT series (the body phantom of ``scripts/benchmark.py``, int16), converts
it with ``dicomrecon convert`` (to ``.nii``, ``.nii.gz`` and ``.nrrd``, with the sidecar), then runs,
each as a child process measured by GNU ``/usr/bin/time`` (``ru_maxrss``; see
``benchmark.run_child`` for why not this process's own ``wait4``):

* ``dicomrecon export CT.nii -o ...``    (a NIfTI with the sidecar beside it as reference)
* ``dicomrecon export CT.nii.gz -o ...``
* ``dicomrecon export CT.nrrd -o ...``
* ``dicomrecon export SERIES/ -o ...``   (a DICOM folder: decoded, then exported)
* ``dicomrecon convert SERIES/ -f nii``  (the peer: the same volume read and written once)
* ``python -c "import dicomrecon.cli, SimpleITK, pydicom"`` (the interpreter floor)

and reports each peak RSS as a ratio to the volume's array bytes (nx * ny * nz * 2).  The target
(issue 8, finding 8) is an export under 1.5x the volume.  The exit code is 0 unless a command
fails; a missed target prints FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import COLUMNS, ROWS, generate, gnu_time, run_child  # noqa: E402

TARGET = 1.5


def _cli() -> list:
    return [sys.executable, "-m", "dicomrecon.cli"]


def measure(work: str, n_slices: int, seed: int) -> dict:
    series = os.path.join(work, "series")
    if not (os.path.isdir(series) and len(os.listdir(series)) == n_slices):  # --keep: reuse
        shutil.rmtree(series, ignore_errors=True)
        generate(series, n_slices, seed)
    timer = gnu_time()
    volume_bytes = ROWS * COLUMNS * n_slices * 2
    rows = {}

    def run(label, argv, out=None):
        if out:
            shutil.rmtree(out, ignore_errors=True)
        wall, rss, code = run_child(argv, os.path.join(work, label + ".log"), timer=timer)
        if code != 0:
            with open(os.path.join(work, label + ".log")) as fp:
                raise SystemExit(f"export_memory: {label} failed ({code}): {fp.read()[-2000:]}")
        rows[label] = {"peak_rss_mib": round(rss / 2 ** 20, 1),
                       "ratio_to_volume": round(rss / volume_bytes, 3), "wall_s": round(wall, 2)}
        print(f"  {label:28s} peak {rss / 2 ** 20:8.1f} MiB  = {rss / volume_bytes:5.2f}x the "
              f"volume  ({wall:.1f} s)", flush=True)

    conv = os.path.join(work, "conv")
    for fmt in ("nii", "nii.gz", "nrrd"):
        run(f"convert -f {fmt}", _cli() + ["convert", series, "-o", conv, "-f", fmt,
                                           "--name", "CT", "-q", "--no-progress"])
    run("interpreter floor", [sys.executable, "-c", "import dicomrecon.cli, SimpleITK, pydicom, "
                              "dicomrecon.export"])
    for label, src in (("export CT.nii", "CT.nii"), ("export CT.nii.gz", "CT.nii.gz"),
                       ("export CT.nrrd", "CT.nrrd")):
        out = os.path.join(work, "dcm")
        run(label, _cli() + ["export", os.path.join(conv, src), "-o", out], out)
    run("export DICOM folder", _cli() + ["export", series, "-o", os.path.join(work, "dcm")],
        os.path.join(work, "dcm"))
    return {"volume_bytes": volume_bytes, "shape_xyz": [COLUMNS, ROWS, n_slices],
            "timer": timer or "os.wait4 (upper bound)", "runs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    work = args.keep or tempfile.mkdtemp(prefix="dicomrecon-export-memory-")
    os.makedirs(work, exist_ok=True)
    try:
        print(f"export memory: {COLUMNS} x {ROWS} x {args.slices} int16 in {work}", flush=True)
        res = measure(work, args.slices, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    worst = max(v["ratio_to_volume"] for k, v in res["runs"].items() if k.startswith("export"))
    res["target"] = f"every export under {TARGET}x the volume"
    res["worst_export_ratio"] = worst
    print(f"{'PASS' if worst < TARGET else 'FAIL'}: worst export peak = {worst:.2f}x the volume "
          f"(target < {TARGET}x)")
    if args.json:
        with open(args.json, "w") as fp:
            json.dump(res, fp, indent=2)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
