"""SIGINT, SIGTERM and SIGHUP stop convert and export cleanly, and a later run removes what a
killed (SIGKILL) run left behind.

Each run is a real ``python -m dicomrecon.cli`` subprocess on an input big enough that the
signal can land while the output is being written (convert: a 150 MiB NIfTI file; export: 120
DICOM files).  The signal is sent at a
seeded random point: a random time after start (or as soon as the output's temporary appears,
whichever comes first), or a random few milliseconds after the temporary appears (mid-write:
every signal is tested there).  Afterwards: the documented exit code (128 + the signal number), one line on stderr
and no traceback, no temporary in or beside OUTDIR, no half-written output, and the input
unchanged (hash).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

from dicomrecon.synthetic import SeriesSpec, write_series
from dicomrecon.writers import is_stale_temporary, remove_stale_temporaries, write_volume

ROWS = COLS = 512
N_SLICES = 300                    # convert: 150 MiB of int16 pixels into one NIfTI file
N_EXPORT = 120                    # export: 120 files (one per slice) of 512 KiB
SEED = 8
TEMP = re.compile(r"dicomrecon-part|dicomrecon-old|\.part$")
SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}


# --------------------------------------------------------------------------------------------
# fixtures: a large DICOM series and a large NIfTI volume, made quickly
# --------------------------------------------------------------------------------------------
def _fast_series(folder, n_slices: int, rows: int = ROWS, cols: int = COLS) -> None:
    """A regular axial int16 CT series: one slice from the project's factory, cloned with its
    position, UIDs and pixels changed (the factory samples a phantom per pixel: too slow for
    hundreds of 512 x 512 slices here)."""
    write_series(SeriesSpec(rows=rows, columns=cols, n_slices=1, pixel_spacing=(0.7, 0.7)),
                 str(folder))
    first = os.path.join(folder, os.listdir(folder)[0])
    ds = pydicom.dcmread(first)
    os.unlink(first)
    base = np.add.outer(np.arange(rows), np.arange(cols)).astype(np.int16)
    z0 = float(ds.ImagePositionPatient[2])
    for k in range(n_slices):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"2.25.{10 ** 20 + k}"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                                   z0 + 2.0 * k]
        ds.PixelData = (base + k).tobytes()
        ds.save_as(os.path.join(folder, f"IM{k:04d}.dcm"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("signals")
    series = root / "series"
    series.mkdir()
    _fast_series(series, N_SLICES)
    small = root / "small"
    small.mkdir()
    _fast_series(small, 3, 8, 8)
    vol = root / "volume.nii"
    write_volume(str(vol), np.zeros((N_EXPORT, ROWS, COLS), np.int16) +
                 np.arange(COLS, dtype=np.int16), np.diag([0.7, 0.7, 2.0, 1.0]), "nii")
    small_vol = root / "small.nii"
    write_volume(str(small_vol), np.ones((2, 4, 4), np.int16), np.eye(4), "nii")
    return {"series": series, "small": small, "volume": vol, "small_volume": small_vol}


def _hash(path) -> str:
    h = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, files in os.walk(path) for f in files)
    for p in paths:
        h.update(os.path.relpath(p, path).encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _temporaries(folder) -> list:
    try:
        return sorted(e for e in os.listdir(folder) if TEMP.search(e))
    except FileNotFoundError:
        return []


def _start(args) -> subprocess.Popen:
    def default_signals():  # as from a terminal: a background job would inherit SIG_IGN
        for name in SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    return subprocess.Popen([sys.executable, "-m", "dicomrecon.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, preexec_fn=default_signals)


def _signal_at(proc, watch, rng: random.Random, sig: int, mode: str) -> str:
    """Send ``sig`` at a random point; returns where.  ``watch`` is the folder in which the
    output's temporary appears.  ``mode``: "time" (a random time, or when the temporary
    appears if that is sooner) or "mid-write" (a random few ms after it appears)."""
    delay = rng.uniform(0.2, 2.0) if mode == "time" else rng.uniform(0.0, 0.05)
    t0 = time.monotonic()
    seen = None
    while proc.poll() is None:
        if seen is None and _temporaries(watch):
            seen = time.monotonic()
        now = time.monotonic()
        if (mode == "time" and (now - t0 >= delay or seen)) or \
                (mode == "mid-write" and seen and now - seen >= delay):
            proc.send_signal(sig)
            return f"{mode} {now - t0:.2f}s (temporary seen: {seen is not None})"
        time.sleep(0.005)
    pytest.fail(f"the command ended (exit {proc.returncode}) before the signal: "
                f"{proc.stderr.read().decode()[-500:]}")


def _check_clean_exit(proc, name: str, where: str, finished=lambda: False) -> str:
    """``finished()``: whether the command's whole output is in place (checked after exit)."""
    out, err = proc.communicate(timeout=60)
    err = err.decode()
    ctx = f"{name} at {where}: exit {proc.returncode}\nstderr: {err[-1500:]}"
    assert "Traceback" not in err, ctx
    if proc.returncode == -getattr(signal, name) and (where.startswith("time") or finished()):
        # before main() installs the handlers (interpreter start-up), or after the command
        # returned (Python's shutdown restores the default handlers): the default action ends
        # the process (a shell reports the same 128 + n), and either nothing was written or
        # everything was (the caller checks which)
        assert err == "", ctx
        return ctx
    assert proc.returncode == SIGNALS[name], ctx
    assert f"interrupted by {name}" in err, ctx
    return ctx


# --------------------------------------------------------------------------------------------
# convert and export under SIGINT / SIGTERM / SIGHUP
# --------------------------------------------------------------------------------------------
#: every signal mid-write; SIGTERM also at a random time (start-up, scan, decode...)
POINTS = [("SIGTERM", "time"), ("SIGINT", "mid-write"), ("SIGTERM", "mid-write"),
          ("SIGHUP", "mid-write")]


@pytest.mark.parametrize("name,mode", POINTS)
def test_convert_stopped_by_signal_leaves_nothing(inputs, tmp_path, name, mode):
    rng = random.Random(f"{SEED}-convert-{name}-{mode}")
    out = tmp_path / "out"
    before = _hash(inputs["series"])
    proc = _start(["convert", inputs["series"], "-o", out, "-f", "nii", "--name", "CT"])
    nii = out / "CT.nii"
    ctx = _check_clean_exit(proc, name, _signal_at(proc, out, rng, getattr(signal, name), mode),
                            finished=nii.exists)
    assert _temporaries(out) == [] and _temporaries(tmp_path) == [], ctx
    if nii.exists():  # renamed into place only when complete
        assert nii.stat().st_size == 352 + N_SLICES * ROWS * COLS * 2, ctx
    assert _hash(inputs["series"]) == before, ctx


@pytest.mark.parametrize("name,mode", POINTS)
def test_export_stopped_by_signal_leaves_nothing(inputs, tmp_path, name, mode):
    rng = random.Random(f"{SEED}-export-{name}-{mode}")
    out = tmp_path / "dcm"
    before = _hash(inputs["volume"])
    proc = _start(["export", inputs["volume"], "-o", out, "--standalone"])
    ctx = _check_clean_exit(proc, name, _signal_at(proc, tmp_path, rng, getattr(signal, name), mode),
                            finished=out.exists)
    assert sorted(os.listdir(tmp_path)) in ([], ["dcm"]), ctx
    if out.exists():  # renamed into place only when complete
        assert len(os.listdir(out)) == N_EXPORT, ctx
    assert _hash(inputs["volume"]) == before, ctx


# --------------------------------------------------------------------------------------------
# a killed run's temporaries are removed by the next run, which says so
# --------------------------------------------------------------------------------------------
def _kill_mid_write(args, watch) -> None:
    proc = _start(args)
    t0 = time.monotonic()
    while not _temporaries(watch):
        assert proc.poll() is None, f"ended before writing: {proc.stderr.read().decode()}"
        assert time.monotonic() - t0 < 60
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    assert _temporaries(watch), "SIGKILL left no temporary: the test cannot see a leftover"


def test_convert_removes_a_killed_runs_temporaries(inputs, tmp_path):
    out = tmp_path / "out"
    _kill_mid_write(["convert", inputs["series"], "-o", out, "-f", "nii", "--name", "CT"], out)
    left = _temporaries(out)
    proc = _start(["convert", inputs["small"], "-o", out, "-f", "nii", "--name", "small"])
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 0, err
    for name in left:
        assert f"removed {out / name}: a temporary left by an interrupted dicomrecon run" in err
    assert _temporaries(out) == []


def test_export_removes_a_killed_runs_temporaries(inputs, tmp_path):
    out = tmp_path / "dcm"
    _kill_mid_write(["export", inputs["volume"], "-o", out, "--standalone"], tmp_path)
    left = _temporaries(tmp_path)
    proc = _start(["export", inputs["small_volume"], "-o", out, "--standalone"])
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    for name in left:
        assert f"removed {tmp_path / name}" in stdout.decode()
    assert sorted(os.listdir(tmp_path)) == ["dcm"]


# --------------------------------------------------------------------------------------------
# only our own temporaries, of dead writers, are ever removed
# --------------------------------------------------------------------------------------------
def test_stale_temporaries_are_matched_strictly(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    ours_dead = f".CT.nii.{dead.pid}.abcd_123.dicomrecon-part"
    ours_live = f".CT.nii.{os.getpid()}.abcd_123.dicomrecon-part"
    others = [".CT.nii.12.abcd_12.dicomrecon-part",      # 7 random characters
              "CT.nii.1.abcd_123.dicomrecon-part",        # not hidden
              ".CT.nii.x1.abcd_123.dicomrecon-part",      # not a process id
              ".dicomrecon-ABCDEFGH.part",                # not tempfile's alphabet
              ".something.part", "notes.txt", ours_live]
    for n in [ours_dead, *others]:
        (tmp_path / n).write_bytes(b"x")
    legacy = tmp_path / ".dicomrecon-k2j_0x9a.part"      # dicomrecon <= 553b5bc, no pid
    legacy.write_bytes(b"x")
    folder = tmp_path / f".dcm.{dead.pid}.q1w2e3r4.dicomrecon-part"
    folder.mkdir()
    (folder / "IM00001.dcm").write_bytes(b"x")
    assert is_stale_temporary(str(tmp_path), ours_dead)
    assert not is_stale_temporary(str(tmp_path), ours_dead, name="other.nii")
    assert not is_stale_temporary(str(tmp_path), legacy.name)   # recent: may be running
    os.utime(legacy, (0, 0))
    lines = []
    removed = remove_stale_temporaries(str(tmp_path), report=lines.append)
    assert sorted(map(os.path.basename, removed)) == sorted([ours_dead, legacy.name,
                                                             folder.name])
    assert len(lines) == 3 and all("interrupted dicomrecon run" in ln for ln in lines)
    assert sorted(os.listdir(tmp_path)) == sorted(others)
