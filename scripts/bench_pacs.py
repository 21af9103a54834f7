#!/usr/bin/env python
"""Convert straight from a PACS vs. retrieve first, then convert: is the PACS path lean?

Usage::

    python scripts/bench_pacs.py                   # 300 slices of 512 x 512, 3 rounds
    python scripts/bench_pacs.py --slices 50 --repeat 1   # a quick run

What it does, in one run:

1. Generates a synthetic 512 x 512 int16 CT series (``--slices``, default 300) with the
   benchmark's body phantom (scripts/benchmark.py), starts Debian's Orthanc on free loopback
   ports (the test fixture, tests/pacs_fixture.py: basic auth, DICOMweb plugin, C-GET allowed)
   and uploads the series through the REST API.
2. Times, as child processes, interleaved per round (so drift of a shared machine hits all
   alike), the median over ``--repeat`` rounds:

   * ``web``: ``dicomrecon convert http://.../studies/S/series/SE -f nii`` (QIDO-RS + WADO-RS)
   * ``web_ref``: plain dicomweb-client ``iter_series`` writing each instance to a folder, then
     ``dicomrecon convert FOLDER -f nii``
   * ``dimse``: ``dicomrecon convert dimse://ORTHANC@.../S/SE -f nii`` (C-FIND + C-GET)
   * ``dimse_ref``: dcmtk ``getscu`` (C-GET) into a folder, then ``dicomrecon convert``

3. Reports ``web / web_ref`` and ``dimse / dimse_ref`` (target <= 1.1: converting from a PACS
   costs at most 10 % more than retrieving with a standard tool and converting locally), and
   checks that every run wrote the same voxels.

The last line printed is one JSON document with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.1
WEB_REF = r"""
import os, sys
from dicomweb_client.api import DICOMwebClient
import requests
base, study, series, out = sys.argv[1:5]
s = requests.Session(); s.auth = (os.environ["DICOMRECON_DICOMWEB_USER"],
                                  os.environ["DICOMRECON_DICOMWEB_PASSWORD"])
c = DICOMwebClient(base, session=s)
for ds in c.iter_series(study, series, media_types=(("application/dicom", "*"),)):
    ds.save_as(os.path.join(out, str(ds.SOPInstanceUID) + ".dcm"), enforce_file_format=True)
"""


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def timed(argvs: list, env: dict) -> float:
    """Wall time of the commands run one after the other; each must succeed."""
    os.sync()
    t0 = time.perf_counter()
    for argv in argvs:
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        if p.returncode:
            raise SystemExit(f"{argv[:3]}... failed ({p.returncode}): {p.stderr[-2000:]}")
    return time.perf_counter() - t0


def digest(folder: Path) -> str:
    (nii,) = folder.glob("*.nii")
    import nibabel
    img = nibabel.load(str(nii))
    return hashlib.sha256(img.get_fdata(dtype="float32").tobytes()
                          + img.affine.round(6).tobytes()).hexdigest()[:16]


def commands(name: str, server, study: str, series: str, work: Path) -> list:
    """The argv list of one measurement; outputs go to work/name (fresh each round)."""
    dr = [sys.executable, "-m", "dicomrecon.cli", "convert"]
    out, got = work / name, work / f"{name}_in"
    for d in (out, got):
        shutil.rmtree(d, ignore_errors=True)
    got.mkdir()
    local = dr + [str(got), "-o", str(out), "-f", "nii", "-q"]
    if name == "web":
        return [dr + [f"{server.dicomweb}/studies/{study}/series/{series}", "-o", str(out),
                      "-f", "nii", "-q"]]
    if name == "dimse":
        return [dr + [f"{server.dimse}/{study}/{series}", "-o", str(out), "-f", "nii", "-q"]]
    if name == "web_ref":
        return [[sys.executable, "-c", WEB_REF, server.dicomweb, study, series, str(got)], local]
    getscu = ["getscu", "-S", "-aet", "DICOMRECON", "-aec", "ORTHANC", "-k",
              "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}", "-k",
              f"SeriesInstanceUID={series}", "-od", str(got), "127.0.0.1",
              str(server.dicom_port)]
    return [getscu, local]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not shutil.which("getscu"):
        raise SystemExit("getscu not found: apt-get install -y dcmtk")
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    bench = _load("dicomrecon_benchmark", ROOT / "scripts" / "benchmark.py")
    fixture = _load("pacs_fixture", ROOT / "tests" / "pacs_fixture.py")
    work = Path(tempfile.mkdtemp(prefix="dicomrecon-bench-pacs-"))
    server = fixture.Orthanc(work / "orthanc")
    try:
        return _run(args, bench, fixture, server, work)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run(args, bench, fixture, server, work: Path) -> int:
    import pydicom
    src = work / "series"
    print(f"generating {args.slices} slices of 512 x 512 ...", flush=True)
    bench.generate(str(src), args.slices, args.seed)
    first = next(src.iterdir())
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    server.start()
    t0 = time.perf_counter()
    assert server.upload(src) == args.slices, server.log()
    print(f"uploaded to Orthanc in {time.perf_counter() - t0:.1f} s", flush=True)
    env = dict(os.environ, DICOMRECON_DICOMWEB_USER=fixture.USER,
               DICOMRECON_DICOMWEB_PASSWORD=fixture.PASSWORD,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    names = ["web", "web_ref", "dimse", "dimse_ref"]
    times = {n: [] for n in names}
    for r in range(args.repeat + 1):          # round 0 warms Orthanc's and the OS's caches
        for n in names:
            t = timed(commands(n, server, study, series, work), env)
            if r:
                times[n].append(t)
        print(f"round {r}{' (warm-up)' if not r else ''}: " + ", ".join(
            f"{n} {times[n][-1]:.2f} s" for n in names if r), flush=True)
    digests = {n: digest(work / n) for n in names}
    med = {n: statistics.median(v) for n, v in times.items()}
    ratios = {"web_vs_ref": statistics.median(a / b for a, b in zip(times["web"],
                                                                        times["web_ref"])),
              "dimse_vs_ref": statistics.median(a / b for a, b in zip(times["dimse"],
                                                                          times["dimse_ref"]))}
    print(f"\n{args.slices} slices of 512 x 512 int16 ({args.slices * 512 * 512 * 2 >> 20} MiB),"
          f" median of {args.repeat} round(s)")
    for n in names:
        print(f"  {n:<10} {med[n]:6.2f} s")
    for k, v in ratios.items():
        print(f"  {k:<13} {v:.2f}  (target <= {TARGET}: {'ok' if v <= TARGET else 'FAIL'})")
    same = len(set(digests.values())) == 1
    print(f"  same voxels and affine in all four outputs: {same}")
    print(json.dumps({"slices": args.slices, "median_s": med, "ratios": ratios,
                      "times_s": times, "same_output": same}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
