#!/usr/bin/env python
"""Time the QC page against the conversion it shows, on 512 x 512 x 300 CT series.

Usage::

    python scripts/bench_qc.py                  # 300 slices, 3 rounds
    python scripts/bench_qc.py --slices 100 --repeat 1

Two synthetic series are written with the project's factory (the body phantom of
``scripts/benchmark.py``): a plain axial stack, and the same with a 15 deg gantry tilt, which
is resampled and so also gets the "before and after" pictures (its source slices are decoded
again for the naive stack).  For each, in interleaved rounds, as child processes on a warm page
cache:

* ``dicomrecon convert IN -o OUT`` (``.nii.gz``)
* ``dicomrecon convert IN -o OUT --qc`` (the same, plus ``OUT/qc/index.html``)
* ``dicomrecon qc OUT`` (the page alone, for an existing conversion)

and it reports median wall times and the ratio (convert --qc - convert) / convert: the extra
time the page costs.  The target is <= 0.20 for the plain CT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchmark import body_phantom, gnu_time, run_child, warm_cache  # noqa: E402

TARGET = 0.20


def write_ct(folder: str, n_slices: int, tilt_deg: float, seed: int) -> None:
    from dicomrecon.synthetic import SeriesSpec, write_series
    ps = (0.7, 0.7)
    spec = SeriesSpec(rows=512, columns=512, n_slices=n_slices, pixel_spacing=ps,
                      slice_step=1.0, tilt_deg=tilt_deg, dtype="int16", shuffle_names=True,
                      origin=(-511 * ps[1] / 2, -511 * ps[0] / 2, 500.0 - (n_slices - 1) / 2),
                      phantom=body_phantom(seed), seed=seed,
                      series_description=f"qc bench tilt {tilt_deg:g}")
    write_series(spec, folder)


def time_case(src: str, work: str, repeat: int, timer) -> dict:
    cli = [sys.executable, "-m", "dicomrecon.cli"]
    runs = {
        "convert": lambda out: cli + ["convert", src, "-o", out, "-q", "--no-progress"],
        "convert --qc": lambda out: cli + ["convert", src, "-o", out, "-q", "--no-progress",
                                           "--qc"],
        "qc": lambda out: cli + ["qc", out],
    }
    walls = {k: [] for k in runs}
    existing = os.path.join(work, "existing")
    run_child(runs["convert"](existing), os.path.join(work, "log"))
    for _ in range(repeat + 1):  # the first round warms up and is not counted
        for key, argv in runs.items():
            out = existing if key == "qc" else os.path.join(work, "out")
            if key != "qc":
                shutil.rmtree(out, ignore_errors=True)
            warm_cache(src)
            wall, _, code = run_child(argv(out), os.path.join(work, "log"), timer=timer)
            if code != 0:
                with open(os.path.join(work, "log")) as f:
                    raise SystemExit(f"{key} failed ({code}): {f.read()[-2000:]}")
            walls[key].append(wall)
    med = {k: statistics.median(v[1:]) for k, v in walls.items()}
    return {"median_s": med, "extra_ratio": (med["convert --qc"] - med["convert"]) / med["convert"],
            "qc_alone_ratio": med["qc"] / med["convert"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also save the figures to FILE")
    args = ap.parse_args(argv)
    timer = gnu_time()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_qc_") as work:
        for name, tilt in (("plain", 0.0), ("tilted 15 deg", 15.0)):
            src = os.path.join(work, f"src_{int(tilt)}")
            t = time.perf_counter()
            write_ct(src, args.slices, tilt, args.seed)
            print(f"{name}: wrote 512x512x{args.slices} in {time.perf_counter() - t:.0f} s",
                  flush=True)
            results[name] = time_case(src, work, args.repeat, timer)
            shutil.rmtree(src)
    print(f"\n512 x 512 x {args.slices} int16 CT, .nii.gz, median of {args.repeat} round(s)")
    print(f"{'series':<16}{'convert s':>11}{'convert --qc s':>16}{'qc alone s':>12}"
          f"{'extra':>8}  target <= {TARGET:.0%} (plain)")
    for name, r in results.items():
        m = r["median_s"]
        print(f"{name:<16}{m['convert']:>11.2f}{m['convert --qc']:>16.2f}{m['qc']:>12.2f}"
              f"{r['extra_ratio']:>8.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if results["plain"]["extra_ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
