#!/usr/bin/env python
"""Benchmark ``dicomrecon batch`` on a generated archive: 1 and 2 local workers, a Dask cluster
of 2 workers, and dcm2niix over the same folders with 2 parallel processes; then discovery of
100,000 files.

Usage::

    python scripts/bench_batch.py                       # default archive (2 GB), 3 rounds
    python scripts/bench_batch.py --large               # 512 x 512 CT: several times larger
    python scripts/bench_batch.py --series 30 --discovery-files 20000   # a quick run
    python scripts/bench_batch.py --keep /tmp/bb --json bb.json

What it does, in one run:

1. Generates an archive (seeded, :mod:`dicomrecon.synthetic`): ``--series`` series (default 100)
   in nested folders ``patientN/studyM/seriesK``: axial CT of 100-300 slices (two of them
   512 x 512 x 300, the largest volume), gantry-tilted CT (resampled by dicomrecon), MR at
   oblique orientations, and enhanced multi-frame MR (one file per series).  Pixels are a smooth
   phantom plus noise.  ``--large`` makes every CT 512 x 512.
2. Times, on warm page cache, each as a child process (wall time and peak RSS through GNU time),
   in ``--repeat`` interleaved rounds (default 3; each tool's median round is reported):

   * ``dicomrecon batch -f nii --workers 1`` and ``--workers 2``
   * ``dicomrecon batch -f nii --scheduler tcp://127.0.0.1:PORT`` on a ``dask scheduler`` with
     two ``dask worker --nthreads 1`` processes started here (their start-up is not timed),
     without Dask's worker profiler, as the README recommends for conversion workers
   * ``dcm2niix -z n`` over every series folder, two processes at a time (as GNU parallel -j2)
   * a floor (:data:`FLOOR_CHILD`): two processes doing only the work the issue and the design
     mandate, with no logic: GDCM's scanner over every file, then every file read, written
     and hashed (sha256) into one output per series.  dicomrecon cannot beat it; how far it
     lies below dcm2niix says how much of the gap the mandated work explains

   Throughput is input bytes / wall time.  Peak RSS per worker is the largest
   ``worker_peak_rss`` the batch manifest records (each worker's ``ru_maxrss``), against the
   largest output volume.
3. Writes ``--discovery-files`` (default 100,000) tiny DICOM files (8 x 8 pixels, 100 per
   series, byte-patched copies of one template, so writing them is fast) and times discovery
   alone (headers read by 2 workers, grouped) in a child process, at a quarter of the files and
   at all of them, with its peak RSS: the growth between the two is the index.

Where the time goes: each batch run writes its driver's phases (``DICOMRECON_BATCH_TIMINGS``,
wall and CPU seconds of listing, discovery, planning, converting, committing) and the manifest
holds each series' wall and CPU time on its worker; the report prints them, and CPU seconds
per tool (dcm2niix's from ``wait4``), which a loaded machine distorts far less than wall times.
``--baseline-src DIR`` also runs the batch rows with the dicomrecon source tree in DIR (e.g. a
``git archive`` of an earlier commit), interleaved, as a before/after in the same conditions.

The targets are ratios measured in the same run (the machine is shared and noisy): 2 workers /
1 worker >= 1.7x; local pool / dcm2niix (2 processes) >= 1.0x; Dask within 15 % of the local
pool; peak RSS per worker <= 1.5x the largest volume.  Missed targets are reported as FAIL but
do not change the exit code, which is non-zero only when a tool fails to run.  The last line
printed is one JSON document with every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from benchmark import (dcm2niix_binary, find_executable, fmt, folder_bytes,  # noqa: E402
                       gnu_time, ratio, run_child, source_state, warm_cache)

KEYS = ("w1", "w2", "dask2", "dcm2niix2", "floor2", "w1_base", "w2_base")
LABELS = {"w1": "dicomrecon batch --workers 1", "w2": "dicomrecon batch --workers 2",
          "dask2": "dicomrecon batch --scheduler (2 w)", "dcm2niix2": "dcm2niix -z n, 2 processes",
          "floor2": "floor: mandated work, 2 processes",
          "w1_base": "baseline --workers 1", "w2_base": "baseline --workers 2"}
TARGETS = [
    ("speedup_2w_vs_1w", ">=", 1.7, "batch --workers 2 throughput / --workers 1"),
    ("local_vs_dcm2niix", ">=", 1.0, "batch --workers 2 throughput / dcm2niix, 2 processes"),
    ("dask_vs_local", ">=", 0.85, "Dask (2 workers) throughput / local pool (2 workers)"),
    ("rss_vs_volume", "<=", 1.5, "peak RSS per worker (local, 2 workers) / largest volume"),
]


# ============================================================================ the archive
def phantom(seed: int):
    """Smooth structures plus seeded noise, in HU-like values."""
    def values(points):
        p = np.asarray(points, dtype=np.float32)
        z = float(p[..., 2].mean())
        rng = np.random.default_rng([seed, int(round(z * 100)) & 0xFFFFFFFF])
        body = 60 * np.sin(p[..., 0] / 17.0) * np.cos(p[..., 1] / 23.0) + 40
        body[(p[..., 0] ** 2 + p[..., 1] ** 2) > 150 ** 2] = -1000
        return body + rng.normal(0, 10, p.shape[:-1]).astype(np.float32)
    return values


def archive_plan(n_series: int, large: bool, seed: int) -> list:
    """(kind, SeriesSpec kwargs, folder) for each series, deterministic."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(n_series):
        folder = f"patient{i % 7}/study{i % 13}/series{i:03d}"
        kind = ["ct", "ct", "ct", "ct", "tilt", "mr", "mr", "enh"][i % 8]
        side = 512 if (large and kind in ("ct", "tilt")) or i < 2 else 256
        if kind in ("ct", "tilt"):
            n = 300 if i < 2 else int(rng.integers(100, 301)) // (2 if kind == "tilt" else 1)
            kw = dict(rows=side, columns=side, n_slices=n, pixel_spacing=(0.7, 0.7),
                      slice_step=1.0, modality="CT",
                      tilt_deg=float(rng.uniform(10, 20)) if kind == "tilt" else 0.0)
        else:
            a = np.radians(rng.uniform(0, 30))
            kw = dict(rows=256 if kind == "mr" else 128, columns=256 if kind == "mr" else 128,
                      n_slices=int(rng.integers(24, 61)), pixel_spacing=(0.9, 0.9),
                      slice_step=3.0, modality="MR", dtype="uint16",
                      iop=(1.0, 0.0, 0.0, 0.0, float(np.cos(a)), float(np.sin(a))))
        plan.append((kind, kw, folder))
    return plan


def _write_one(job) -> None:
    from dicomrecon.synthetic import SeriesSpec, write_enhanced, write_series
    i, (kind, kw, folder), root, seed = job
    spec = SeriesSpec(**kw, series_number=i + 1, series_description=f"{kind} {i}",
                      phantom=phantom(seed + i), shuffle_names=True, seed=i,
                      origin=(-90.0, -90.0, float(10 * i)))
    path = os.path.join(root, folder)
    if kind == "enh":
        write_enhanced(spec, os.path.join(path, "enhanced.dcm"))
    else:
        write_series(spec, path)


def generate_archive(root: str, n_series: int, large: bool, seed: int) -> None:
    """Write the archive, one series per task on every core."""
    t0 = time.perf_counter()
    jobs = [(i, p, root, seed) for i, p in enumerate(archive_plan(n_series, large, seed))]
    with cf.ProcessPoolExecutor(os.cpu_count()) as pool:
        for k, _ in enumerate(pool.map(_write_one, jobs), start=1):
            if k % 10 == 0 or k == n_series:
                print(f"  generated {k}/{n_series} series, {time.perf_counter() - t0:.0f} s",
                      flush=True)


# ============================================================================ runs
#: The floor: only the work the issue and the design mandate, by two processes, with no logic:
#: GDCM's scanner over every file (the tags dicomrecon reads, 400 files a call), then per series
#: folder every file read whole and written, and hashed (sha256), into one output file.
FLOOR_CHILD = """\
import hashlib, json, os, sys
from multiprocessing import get_context
root, out, tags = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def scan(files):
    import gdcm
    s = gdcm.Scanner()
    for t in tags:
        s.AddTag(gdcm.Tag(t >> 16, t & 0xFFFF))
    s.Scan(files)
    return sum(1 for f in files if s.IsKey(f))
def write(job):
    k, folder = job
    h = hashlib.sha256()
    with open(os.path.join(out, f"{k:04d}.nii"), "wb") as fp:
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as src:
                data = src.read()
            h.update(data)
            fp.write(data)
    return h.hexdigest()
if __name__ == "__main__":
    folders = sorted(d for d, sub, fs in os.walk(root) if fs and not sub)
    files = [os.path.join(d, f) for d in folders for f in sorted(os.listdir(d))]
    os.makedirs(out)
    with get_context("fork").Pool(2) as pool:
        n = sum(pool.map(scan, [files[i:i + 400] for i in range(0, len(files), 400)]))
        pool.map(write, list(enumerate(folders)), chunksize=1)
    print(n)
"""


def leaf_folders(root: str) -> list:
    return sorted(d for d, sub, files in os.walk(root) if files and not sub)


def run_child_cpu(argv: list, log_path: str, timer) -> tuple:
    """Run ``argv`` under GNU time (``timer``): (wall, CPU seconds, peak RSS, exit code).  The
    CPU time is from ``wait4`` (GNU time's own, which includes the child it waited for); the
    peak RSS is GNU time's figure (see benchmark.run_child for why)."""
    rss_path = log_path + ".rss"
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([timer, "-f", "%M", "-o", rss_path, "--", *argv],
                                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(rss_path) as fp:
        words = fp.read().split()
    os.unlink(rss_path)
    rss = int(words[-1]) * 1024 if words and words[-1].isdigit() else 0
    return wall, usage.ru_utime + usage.ru_stime, rss, proc.returncode


def dcm2niix_parallel(folders: list, out: str, jobs: int, timer) -> tuple:
    """dcm2niix -z n on each folder, ``jobs`` at a time: (wall, CPU seconds, largest peak RSS
    of one, failures)."""
    exe = dcm2niix_binary()

    def one(k_folder):
        k, folder = k_folder
        dest = os.path.join(out, f"{k:04d}")
        os.makedirs(dest)
        return run_child_cpu([exe, "-z", "n", "-f", "%s_%d", "-o", dest, folder],
                             os.path.join(out, f"{k:04d}.log"), timer)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, enumerate(folders)))
    wall = time.perf_counter() - t0
    return (wall, sum(r[1] for r in results), max(r[2] for r in results),
            sum(1 for r in results if r[3] != 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """A scheduler and two single-threaded workers on 127.0.0.1 (as the tests start them)."""

    def __init__(self, logdir: str, workers: int = 2):
        dask = find_executable("dask")
        self.address = f"tcp://127.0.0.1:{free_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.procs = []
        log = open(os.path.join(logdir, "dask.log"), "wb")
        self.procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", port, "--dashboard-address",
             f"127.0.0.1:{free_port()}"], stdout=log, stderr=log, start_new_session=True))
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}  # README
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard"], stdout=log, stderr=log, start_new_session=True, env=env))
        from distributed import Client
        with Client(self.address, timeout="60s") as c:
            c.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        for p in reversed(self.procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.wait(30)


def batch_run(argv_tail: list, work: str, name: str, timer, src: str = None) -> dict:
    """One ``dicomrecon batch`` run (of the source tree ``src``, default this one)."""
    out = os.path.join(work, name)
    timings = os.path.join(work, name + ".phases.json")
    env_before, cwd = dict(os.environ), os.getcwd()
    os.environ["DICOMRECON_BATCH_TIMINGS"] = timings
    os.environ["PYTHONPATH"] = src or REPO  # and not the current folder ("python -m" puts it
    os.chdir(work)                           # first on sys.path)
    os.sync()
    load = os.getloadavg()[0]
    try:
        wall, rss, code = run_child(
            [sys.executable, "-m", "dicomrecon.cli", "batch", *argv_tail, "-o", out, "-f", "nii",
             "-q", "--no-progress"], os.path.join(work, name + ".log"), timer=timer)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env_before)
    records = [json.loads(ln) for ln in open(os.path.join(out, "dicomrecon-batch.jsonl"))]
    vols = [o["bytes"] for r in records for o in r["outputs"] if o["file"].endswith(".nii")]
    phases = json.load(open(timings)) if os.path.exists(timings) else []
    res = {"wall_s": wall, "peak_rss_process_tree": rss, "exit": code, "load_before": load,
           "series": len(records), "written": sum(r["status"] == "written" for r in records),
           "volumes": len(vols), "largest_volume_bytes": max(vols) - 352 if vols else None,
           "worker_peak_rss": max(r.get("worker_peak_rss", 0) for r in records),
           # series-seconds per wall second: how many workers were converting at once
           "busy_workers": sum(r["seconds"] for r in records) / wall,
           "series_seconds": sum(r["seconds"] for r in records),
           "series_cpu_seconds": sum(r.get("cpu_seconds", 0) for r in records),
           "phases": {p["name"]: {"wall": p["wall"], "cpu": p["cpu"]} for p in phases}}
    res["cpu_s"] = cpu_total(res, "--workers" in argv_tail and
                             argv_tail[argv_tail.index("--workers") + 1] == "1")
    shutil.rmtree(out)
    if os.path.exists(timings):
        os.unlink(timings)
    return res


def cpu_total(run: dict, headers_in_driver: bool):
    """CPU seconds of a batch run: its driver, the header chunks (read by the driver itself
    with one worker, else by the workers) and the series on the workers (None when the run
    did not record its phases: an older source tree)."""
    ph = run["phases"]
    if "total (driver)" not in ph:
        return None
    chunks = 0.0 if headers_in_driver else ph.get("read headers (workers, summed)", {}).get(
        "cpu", 0.0)
    return ph["total (driver)"]["cpu"] + chunks + run["series_cpu_seconds"]


def one_round(work: str, archive: str, cluster, timer, baseline: str = None,
              reverse: bool = False) -> dict:
    """One run of every tool, each on a warm page cache; in reverse order when ``reverse``
    (every other round), so that a load that rises or falls during a round favours no tool."""
    out = {}
    runs = [("w1", ["--workers", "1"], None), ("w2", ["--workers", "2"], None),
            ("dask2", ["--scheduler", cluster.address], None)]
    if baseline:
        runs += [("w1_base", ["--workers", "1"], baseline),
                 ("w2_base", ["--workers", "2"], baseline)]
    runs += [("dcm2niix2", None, None), ("floor2", None, None)]
    for key, tail, src in reversed(runs) if reverse else runs:
        warm_cache(archive)
        if tail is not None:
            out[key] = batch_run([archive, *tail], work, key, timer, src)
            continue
        if key == "floor2":
            out[key] = floor_run(archive, work, timer)
            continue
        d2n = os.path.join(work, "dcm2niix")
        os.sync()
        load = os.getloadavg()[0]
        wall, cpu, rss, failures = dcm2niix_parallel(leaf_folders(archive), d2n, 2, timer)
        out[key] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_one_process": rss,
                    "failed_folders": failures, "load_before": load}
        shutil.rmtree(d2n)
    return out


def floor_run(archive: str, work: str, timer) -> dict:
    """One run of :data:`FLOOR_CHILD` (wall and CPU seconds of it and its two processes)."""
    from benchmark import scan_tags_json
    dest = os.path.join(work, "floor")
    os.sync()
    load = os.getloadavg()[0]
    wall, cpu, rss, code = run_child_cpu([sys.executable, "-c", FLOOR_CHILD, archive, dest,
                                          scan_tags_json()], os.path.join(work, "floor.log"),
                                         timer)
    shutil.rmtree(dest, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "exit": code, "load_before": load,
            "peak_rss_one_process": rss}


def run_all(args, work: str, archive: str) -> dict:
    """``--repeat`` interleaved rounds (one run of each tool per round, so that the drift of a
    shared machine hits every tool alike); each tool's figures are from its median round."""
    timer = gnu_time()
    size = folder_bytes(archive)
    res = {"input_bytes": size, "load_before": os.getloadavg()[0], "rounds": []}
    cluster = DaskCluster(work)
    try:
        for k in range(args.repeat):
            res["rounds"].append(one_round(work, archive, cluster, timer, args.baseline_src,
                                            reverse=k % 2 == 1))
            print(f"  round {k + 1}/{args.repeat}: " + ", ".join(
                f"{key} {r['wall_s']:.1f} s" for key, r in res["rounds"][-1].items()), flush=True)
    finally:
        cluster.close()
    for key in [k for k in KEYS if k in res["rounds"][0]]:
        runs = sorted((r[key] for r in res["rounds"]), key=lambda r: r["wall_s"])
        res[key] = dict(runs[len(runs) // 2])
        res[key]["mb_per_s"] = size / 1e6 / res[key]["wall_s"]
        res[key]["walls"] = [r[key]["wall_s"] for r in res["rounds"]]
    res["load_after"] = os.getloadavg()[0]
    return res


# ============================================================================ discovery
def tiny_archive(root: str, n_files: int, per_series: int = 100) -> None:
    """``n_files`` 8 x 8 CT slices, ``per_series`` a series, 100 series a folder: one template
    written by pydicom, then fixed-width UIDs and positions patched into copies of its bytes."""
    from dicomrecon.synthetic import SeriesSpec, write_series
    tmpl_dir = os.path.join(root, "_template")
    path = write_series(SeriesSpec(rows=8, columns=8, n_slices=1, origin=(0.0, 0.0, 0.0),
                                   series_uid="1.2.3.999999999.888888888"), tmpl_dir)[0]
    import pydicom
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.777777777.666666666"
    ds.ImagePositionPatient = ["0.0", "0.0", "55555.5"]
    ds.InstanceNumber = "444444"
    ds.save_as(path, enforce_file_format=True)
    blob = open(path, "rb").read()
    shutil.rmtree(tmpl_dir)
    for k in range(n_files):
        s, i = divmod(k, per_series)
        folder = os.path.join(root, f"f{s // 100:03d}", f"s{s:06d}")
        if i == 0:
            os.makedirs(folder)
        data = (blob.replace(b"999999999.888888888", f"{s:09d}.{0:09d}".encode())
                .replace(b"777777777.666666666", f"{s:09d}.{i:09d}".encode())
                .replace(b"55555.5", f"{i:07.1f}".encode())
                .replace(b"444444", f"{i + 1:06d}".encode()))
        with open(os.path.join(folder, f"{i:04d}.dcm"), "wb") as fp:
            fp.write(data)


DISCOVERY_CHILD = """
import json, resource, sys, time
from dicomrecon.batch.engines import LocalEngine
from dicomrecon.batch.index import build_index
from dicomrecon.batch.inputs import collect
t0 = time.perf_counter()
files = collect(sys.argv[1:])
with LocalEngine(2) as eng:
    idx = build_index(files, eng.map_chunks)
print(json.dumps({"files": idx.n_files, "series": len(idx.series), "skipped": len(idx.skipped),
                  "wall_s": time.perf_counter() - t0,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def discovery(work: str, n_files: int) -> dict:
    root = os.path.join(work, "tiny")
    shutil.rmtree(root, ignore_errors=True)  # left by an interrupted run
    t0 = time.perf_counter()
    tiny_archive(root, n_files)
    gen = time.perf_counter() - t0
    folders = sorted(os.path.join(root, d) for d in os.listdir(root))
    quarter = folders[:max(1, len(folders) // 4)]  # a part of the archive, to see the growth
    out = {"generate_s": gen}
    for label, inputs in (("quarter", quarter), ("all", folders)):
        warm_cache(root)
        p = subprocess.run([sys.executable, "-c", DISCOVERY_CHILD, *inputs], check=True,
                           capture_output=True, text=True)
        out[label] = json.loads(p.stdout.strip().splitlines()[-1])
    shutil.rmtree(root)
    return out


# ============================================================================ report
def ratios(res: dict) -> dict:
    w1, w2, dk, dn, fl = res["w1"], res["w2"], res["dask2"], res["dcm2niix2"], res["floor2"]
    vol = w2["largest_volume_bytes"]
    out = {"speedup_2w_vs_1w": ratio(w2["mb_per_s"], w1["mb_per_s"]),
           "local_vs_dcm2niix": ratio(w2["mb_per_s"], dn["mb_per_s"]),
           "dask_vs_local": ratio(dk["mb_per_s"], w2["mb_per_s"]),
           "rss_vs_volume": ratio(w2["worker_peak_rss"], vol),
           "cpu_w2_vs_dcm2niix": ratio(w2.get("cpu_s"), dn.get("cpu_s")),
           "cpu_w2_vs_w1": ratio(w2.get("cpu_s"), w1.get("cpu_s")),
           "floor_vs_dcm2niix": ratio(fl["mb_per_s"], dn["mb_per_s"]),
           "local_vs_floor": ratio(w2["mb_per_s"], fl["mb_per_s"])}
    for k in ("w1", "w2"):
        if k + "_base" in res:
            out[f"speedup_{k[1]}w_vs_{k[1]}w_base"] = ratio(res[k]["mb_per_s"],
                                                          res[k + "_base"]["mb_per_s"])
    return out


def phase_table(res: dict, keys: list) -> None:
    """The driver's phases (wall / CPU seconds) of each batch run, from its median round."""
    names = []
    for k in keys:
        for name in res[k].get("phases", {}):
            if name not in names:
                names.append(name)
    if not names:
        return
    runs = [k for k in keys if res[k].get("phases")]
    print(f"\n{'phase (wall / CPU s)':<34} " + " ".join(f"{k:>13}" for k in runs))
    for name in names:
        cells = []
        for k in runs:
            p = res[k]["phases"].get(name)
            cells.append(f"{p['wall']:>6.2f}/{p['cpu']:<6.2f}" if p else f"{'-':>13}")
        print(f"{name:<34} " + " ".join(cells))
    cells = [f"{res[k]['series_seconds']:>6.2f}/{res[k]['series_cpu_seconds']:<6.2f}"
             for k in runs]
    print(f"{'series on workers (summed)':<34} " + " ".join(cells))
    print("phases overlap: workers start in the background during 'list files'; 'read "
          "headers' and 'series' are summed over the workers; 'manifest fsync' is inside "
          "'convert'")


def report(res: dict, disc: dict, rat: dict) -> None:
    gb = res["input_bytes"] / 1e9
    keys = [k for k in KEYS if k in res]
    print(f"\narchive: {res['w2']['series']} series, {gb:.2f} GB; largest volume "
          f"{res['w2']['largest_volume_bytes'] / 2**20:.0f} MiB; {os.cpu_count()} CPUs, load "
          f"average {res['load_before']:.1f} before the runs, {res['load_after']:.1f} after")
    print(f"median of {len(res['rounds'])} interleaved round(s); every wall time: "
          + "; ".join(f"{k} " + "/".join(f"{w:.1f}" for w in res[k]["walls"]) for k in keys))
    print(f"{'run':<36} {'wall s':>7} {'MB/s':>7} {'CPU s':>6} {'load':>5} {'written':>7} "
          f"{'worker RSS MiB':>14} {'busy w.':>7}")
    for key in keys:
        r = res[key]
        rss = r.get("worker_peak_rss", r.get("peak_rss_one_process"))
        print(f"{LABELS[key]:<36} {r['wall_s']:>7.1f} {r['mb_per_s']:>7.1f} "
              f"{fmt(r.get('cpu_s'), '.1f'):>6} {r.get('load_before', 0):>5.1f} "
              f"{r.get('written', '-'):>7} {rss / 2**20:>14.0f} "
              f"{fmt(r.get('busy_workers')):>7}")
    print(f"\n{'measure':<58} {'value':>7} {'target':>8}  result")
    for key, op, thr, what in TARGETS:
        v = rat[key]
        ok = "n/a" if v is None else ("PASS" if (v >= thr if op == ">=" else v <= thr) else "FAIL")
        print(f"{what:<58} {fmt(v):>7} {op + ' ' + str(thr):>8}  {ok}")
    for key, what in (("cpu_w2_vs_dcm2niix", "CPU seconds: batch --workers 2 / dcm2niix"),
                      ("cpu_w2_vs_w1", "CPU seconds: batch --workers 2 / --workers 1"),
                      ("floor_vs_dcm2niix", "throughput: floor (mandated work) / dcm2niix"),
                      ("local_vs_floor", "throughput: batch --workers 2 / floor"),
                      ("speedup_2w_vs_2w_base", "throughput --workers 2 / baseline's"),
                      ("speedup_1w_vs_1w_base", "throughput --workers 1 / baseline's")):
        if rat.get(key) is not None:
            print(f"{what:<58} {fmt(rat[key]):>7}")
    print("busy workers: the sum of the series' conversion times / wall time (how many "
          "workers were converting at once); CPU s: driver + header chunks + series (ours), "
          "user + sys (dcm2niix)")
    phase_table(res, keys)
    if disc is None:
        return
    q, a = disc["quarter"], disc["all"]
    grow = (a["peak_rss"] - q["peak_rss"]) / max(1, a["files"] - q["files"])
    print(f"\ndiscovery (2 workers) of {a['files']} files ({a['series']} series): "
          f"{a['wall_s']:.1f} s "
          f"({a['wall_s'] / a['files'] * 1000:.2f} ms a file), peak RSS "
          f"{a['peak_rss'] / 2**20:.0f} MiB; {q['files']} files: {q['wall_s']:.1f} s, "
          f"{q['peak_rss'] / 2**20:.0f} MiB; growth {grow / 1024:.2f} KiB per file "
          "(the index: one header object per image)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=100, help="series in the archive (100)")
    ap.add_argument("--large", action="store_true", help="every CT 512 x 512 (several x larger)")
    ap.add_argument("--discovery-files", type=int, default=100_000,
                    help="tiny files for the discovery measure (100000; 0 to skip it)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (3); medians")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the archive there")
    ap.add_argument("--json", metavar="FILE", help="also save the figures to FILE")
    ap.add_argument("--baseline-src", metavar="DIR", help="also run --workers 1 and 2 with "
                    "the dicomrecon source tree in DIR (PYTHONPATH), interleaved")
    args = ap.parse_args(argv)
    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="bench-batch-")
    os.makedirs(work, exist_ok=True)
    if args.baseline_src:
        args.baseline_src = os.path.abspath(args.baseline_src)
    try:
        archive = os.path.join(work, "archive")
        if not os.path.isdir(archive):
            print(f"generating {args.series} series into {archive}", flush=True)
            generate_archive(archive, args.series, args.large, args.seed)
        res = run_all(args, work, archive)
        disc = discovery(work, args.discovery_files) if args.discovery_files else None
        rat = ratios(res)
        report(res, disc, rat)
        doc = {"source": source_state(os.path.dirname(os.path.dirname(__file__))),
               "cpus": os.cpu_count(), "runs": res, "discovery": disc, "ratios": rat}
        if args.json:
            with open(args.json, "w") as fp:
                json.dump(doc, fp, indent=2)
        print(json.dumps(doc))
        bad = [k for k in ("w1", "w2", "dask2") if res[k]["exit"] not in (0, 4)]
        bad += ["floor2"] if res["floor2"]["exit"] != 0 else []
        return 1 if bad or res["dcm2niix2"]["failed_folders"] else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
