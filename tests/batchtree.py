"""Input trees for the batch tests, built from the real corpus and from synthetic series, and
helpers that read a batch output folder back (manifest, volumes, sha256)."""

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from dicomrecon.synthetic import SeriesSpec, write_series

#: corpus folder -> where its files go in the batch tree (a list: the files are split in order)
CORPUS_LAYOUT = {
    "decub_si_t1sag_hfdl": ["site1/deep/er/decub_a", "site2/decub_b"],  # one series, 2 folders
    "d2n_mr_rle": ["mixed"],                                             # two studies, 1 folder
    "d2n_mr_hitachi_oblique39": ["mixed"],
    "d2n_mr_siemens_enhanced_mf": ["site1/enh"],
    "table_ge_exam1486_flat_mixed": ["site2/table/x/y"],                 # two series, 1 folder
    "pyd_ect_enhanced_2frame": ["site3"],
}


def build_corpus_tree(corpus: Path, root: Path) -> Path:
    """Copy corpus files into a nested tree: names prefixed with their source folder (so two
    folders can share one), one series split over two folders, two studies in one folder."""
    for src, dests in CORPUS_LAYOUT.items():
        files = sorted(p for p in (corpus / src).rglob("*") if p.is_file())
        for k, path in enumerate(files):
            dest = root / dests[min(len(dests) - 1, k * len(dests) // len(files))]
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / f"{src}_{path.name}")
    return root


def build_synthetic_tree(root: Path, n: int = 6, slices: int = 48) -> Path:
    """``n`` tilted CT series (resampled: a fraction of a second each) in nested folders."""
    for i in range(n):
        spec = SeriesSpec(rows=192, columns=192, n_slices=slices, tilt_deg=12.0,
                          series_number=i + 1, series_description=f"tilted {i + 1}",
                          origin=(-10.0, -20.0, 30.0 + i))
        write_series(spec, root / f"p{i % 2}" / f"study{i % 3}" / f"s{i}")
    return root


def volume_key(sidecar: dict) -> tuple:
    src = sidecar["source"]
    group = src["group"]
    return src["series_instance_uid"], tuple(group) if isinstance(group, list) else group


def volumes(outdir: Path) -> dict:
    """(SeriesInstanceUID, group) -> (array, affine, file) for every volume under ``outdir``."""
    out = {}
    for side in outdir.rglob("*.json"):
        if side.name.startswith("dicomrecon-"):
            continue
        d = json.loads(side.read_text())
        vol = side.parent / d["volume"]["file"]
        img = nib.load(str(vol))
        assert volume_key(d) not in out, f"{vol}: a second volume for {volume_key(d)}"
        out[volume_key(d)] = (np.asarray(img.dataobj), img.affine, vol)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(outdir: Path) -> dict:
    """SeriesInstanceUID -> record; asserts one line per series."""
    lines = [json.loads(ln) for ln in (outdir / "dicomrecon-batch.jsonl").read_text().splitlines()]
    uids = [d["series_instance_uid"] for d in lines]
    assert len(uids) == len(set(uids)), "a series has more than one line in the manifest"
    return dict(zip(uids, lines))


def stable_state(outdir: Path) -> dict:
    """Everything a run leaves that must not depend on how it got there: every file below
    ``outdir`` with its sha256 (sidecars without their creation time), and each manifest record
    without timings and worker names."""
    files = {}
    for p in sorted(outdir.rglob("*")):
        rel = str(p.relative_to(outdir))
        if p.is_dir() or rel in ("dicomrecon-batch.jsonl", ".dicomrecon-batch.lock"):
            continue
        if p.suffix == ".json":
            d = json.loads(p.read_text())
            d.pop("created", None)
            files[rel] = d
        elif rel.startswith("dicomrecon-batch-"):  # the summary: without what this run did
            rows = list(csv.DictReader(p.read_text().splitlines()))
            files[rel] = [{k: v for k, v in r.items() if k != "this_run"} for r in rows]
        else:
            files[rel] = sha256(p)
    records = {}
    for uid, r in manifest(outdir).items():
        records[uid] = {k: v for k, v in r.items() if k not in (
            "seconds", "cpu_seconds", "worker", "worker_peak_rss", "finished")}
        records[uid]["outputs"] = [{"file": o["file"]} if o["file"].endswith(".json") else o
                                   for o in r["outputs"]]
    return {"files": files, "manifest": records}


def check_manifest_matches_files(outdir: Path) -> None:
    """Every output the manifest lists exists with its sha256, and every volume or sidecar
    below ``outdir`` is listed (no orphans, no partial files, no staging left)."""
    listed = {}
    for r in manifest(outdir).values():
        for o in r["outputs"]:
            listed[o["file"]] = o["sha256"]
    present = {str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file()
               and not p.name.startswith(("dicomrecon-batch", ".dicomrecon-batch"))}
    assert present == set(listed), (sorted(present - set(listed)), sorted(set(listed) - present))
    for rel, digest in listed.items():
        assert sha256(outdir / rel) == digest, rel
    assert not (outdir / ".dicomrecon-staging").exists()


def batch_argv(*args) -> list:
    return [sys.executable, "-m", "dicomrecon.cli", "batch", *[str(a) for a in args]]


def staged_pids(outdir: Path) -> list:
    """Pids of the processes converting a series right now (from the staging folder names
    ``<series>.<pid>.<random>``)."""
    try:
        names = os.listdir(outdir / ".dicomrecon-staging")
    except FileNotFoundError:
        return []
    return [int(n.split(".")[1]) for n in names if n.count(".") == 2]


def kill_a_converting_worker(outdir: Path, proc: subprocess.Popen, deadline_s: float = 60) -> int:
    """Wait until some worker is converting a series, kill -9 it, return its pid."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        for pid in staged_pids(outdir):
            try:
                os.kill(pid, signal.SIGKILL)
                return pid
            except ProcessLookupError:
                continue
        assert proc.poll() is None, "the batch ended before a worker could be killed"
        time.sleep(0.01)
    raise AssertionError("no worker started converting a series")
