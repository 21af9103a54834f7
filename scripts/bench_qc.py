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

and it reports median wall and CPU (user + system) times and the ratio
(convert --qc - convert) / convert: the extra time the page costs.  The target is <= 0.20 of
wall time for the plain CT.  ``convert --qc`` keeps the mid-planes of each volume it writes
(and the naive stack's plane of a resampled one) and imports matplotlib and draws the
slice-position plot in a forked helper process while it converts; ``qc OUTDIR`` must read the
volumes back and decode the sources again.

The children run with their bytecode cached (``PYTHONPYCACHEPREFIX`` in the work folder,
``PYTHONDONTWRITEBYTECODE`` dropped), as an installed package has it: otherwise every run
would compile dicomrecon's modules again (~0.15 s for the QC modules alone).  The code measured
is the one on ``PYTHONPATH`` (set it to another tree to measure that one in the same way).
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

import subprocess  # noqa: E402

from benchmark import body_phantom, cached_bytecode, warm_cache  # noqa: E402

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


def run_timed(argv: list, log_path: str, env: dict) -> tuple:
    """Run ``argv``; return (wall s, CPU s = user + system of the child, exit code).  CPU time
    is reported beside wall time because on a shared machine wall time is mostly waiting."""
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log,
                                stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def time_case(src: str, work: str, repeat: int) -> dict:
    cli = [sys.executable, "-m", "dicomrecon.cli"]
    runs = {
        "convert": lambda out: cli + ["convert", src, "-o", out, "-q", "--no-progress"],
        "convert --qc": lambda out: cli + ["convert", src, "-o", out, "-q", "--no-progress",
                                           "--qc"],
        "qc": lambda out: cli + ["qc", out],
    }
    walls = {k: [] for k in runs}
    cpus = {k: [] for k in runs}
    existing = os.path.join(work, "existing")
    log = os.path.join(work, "log")
    env = cached_bytecode(dict(os.environ), work)
    run_timed(runs["convert"](existing), log, env)
    for _ in range(repeat + 1):  # the first round warms up and is not counted
        for key, argv in runs.items():
            out = existing if key == "qc" else os.path.join(work, "out")
            if key != "qc":
                shutil.rmtree(out, ignore_errors=True)
            warm_cache(src)
            wall, cpu, code = run_timed(argv(out), log, env)
            if code != 0:
                with open(log) as f:
                    raise SystemExit(f"{key} failed ({code}): {f.read()[-2000:]}")
            walls[key].append(wall)
            cpus[key].append(cpu)
    med = {k: statistics.median(v[1:]) for k, v in walls.items()}
    cpu = {k: statistics.median(v[1:]) for k, v in cpus.items()}
    return {"median_s": med, "median_cpu_s": cpu,
            "extra_ratio": (med["convert --qc"] - med["convert"]) / med["convert"],
            "extra_cpu_ratio": (cpu["convert --qc"] - cpu["convert"]) / cpu["convert"],
            "qc_alone_ratio": med["qc"] / med["convert"],
            "load_average": os.getloadavg(), "walls": walls, "cpus": cpus}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="FILE", help="also save the figures to FILE")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_qc_") as work:
        for name, tilt in (("plain", 0.0), ("tilted 15 deg", 15.0)):
            src = os.path.join(work, f"src_{int(tilt)}")
            t = time.perf_counter()
            write_ct(src, args.slices, tilt, args.seed)
            print(f"{name}: wrote 512x512x{args.slices} in {time.perf_counter() - t:.0f} s",
                  flush=True)
            results[name] = time_case(src, work, args.repeat)
            shutil.rmtree(src)
    print(f"\n512 x 512 x {args.slices} int16 CT, .nii.gz, median of {args.repeat} round(s); "
          f"wall s (CPU s)")
    print(f"{'series':<15}{'convert':>14}{'convert --qc':>15}{'qc alone':>14}"
          f"{'extra wall':>11}{'extra CPU':>10}  target <= {TARGET:.0%} (plain)")
    for name, r in results.items():
        m, c = r["median_s"], r["median_cpu_s"]
        cell = lambda k: f"{m[k]:.2f} ({c[k]:.2f})"  # noqa: E731
        print(f"{name:<15}{cell('convert'):>14}{cell('convert --qc'):>15}{cell('qc'):>14}"
              f"{r['extra_ratio']:>11.0%}{r['extra_cpu_ratio']:>10.0%}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if results["plain"]["extra_ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
