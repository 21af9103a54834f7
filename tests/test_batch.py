"""dicomrecon batch: the same volumes as per-folder convert, on a local pool and on a real Dask
cluster; workers killed, runs killed and resumed, changed inputs, bad series among good ones."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1
import pytest
from typer.testing import CliRunner

import dicomrecon
from dicomrecon.cli import app
from dicomrecon.conversion import DEFAULT_NAME, convert

from batchtree import (CORPUS_LAYOUT, batch_argv, build_corpus_tree, build_synthetic_tree,
                       check_manifest_matches_files, kill_a_converting_worker, manifest,
                       stable_state, volumes)
from daskcluster import SLOW_SERIES, dask_cluster  # noqa: F401  (fixture)
from dicomrecon.synthetic import SeriesSpec, write_series

pytestmark = pytest.mark.corpus
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus_tree(corpus, tmp_path_factory):
    return build_corpus_tree(corpus, tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """Volumes of ``convert`` run on each corpus folder on its own."""
    out = tmp_path_factory.mktemp("convert")
    for src in CORPUS_LAYOUT:
        convert(str(corpus / src), str(out / src), fmt="nii")
    return volumes(out)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_synthetic_tree(tmp_path_factory.mktemp("synthetic"))


def assert_same_volumes(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, (array, affine, path) in want.items():
        assert got[key][0].dtype == array.dtype, key
        assert np.array_equal(got[key][0], array), key
        assert np.array_equal(got[key][1], affine), key
        assert got[key][2].name == path.name, key  # convert's name, in the batch layout


def series_uid(folder) -> str:
    return pydicom.dcmread(next(p for p in sorted(folder.rglob("*")) if p.is_file()),
                           stop_before_pixels=True).SeriesInstanceUID


def test_batch_gives_the_volumes_of_per_folder_convert(corpus, corpus_tree, reference, tmp_path):
    out = tmp_path / "out"
    rows = dicomrecon.batch([corpus_tree], out, workers=2, fmt="nii")
    assert {r.status for r in rows} == {"written"}, [(r.description, r.reasons) for r in rows]
    assert_same_volumes(volumes(out), reference)
    check_manifest_matches_files(out)
    # the series split over two folders is one volume; the two studies of one folder are apart
    decub = [r for r in rows if r.description == "t1_fl2d_sag"]
    assert len(decub) == 1 and decub[0].volumes == 1
    mixed = {series_uid(corpus / "d2n_mr_rle"), series_uid(corpus / "d2n_mr_hitachi_oblique39")}
    studies = {r.outputs.split("/")[1] for r in rows if r.series in mixed}
    assert studies == {"20160309_dicom2nifti", "20171205_dicom2nifti"}
    summary = (out / "dicomrecon-batch-summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(rows) and summary[0].startswith("patient,study,")
    # again: nothing to do, nothing changes
    before = stable_state(out)
    again = dicomrecon.batch([corpus_tree], out, workers=2, fmt="nii")
    assert {r.this_run for r in again} == {"up to date"}
    assert stable_state(out) == before


def test_batch_on_a_dask_cluster_gives_the_same_volumes(dask_cluster, corpus_tree, reference,
                                                        tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(corpus_tree), "-o", str(out), "-f", "nii",
                            "--scheduler", dask_cluster])
    assert r.exit_code == 0, r.output
    assert "Dask dashboard: http://127.0.0.1:" in r.output
    assert "Dask scheduler" in r.output
    assert_same_volumes(volumes(out), reference)
    check_manifest_matches_files(out)


def test_dask_worker_killed_mid_series_then_batch_completes(dask_cluster, synthetic, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(batch_argv(synthetic, "-o", out, "-f", "nii", "--scheduler",
                                       dask_cluster), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    kill_a_converting_worker(out, proc)
    text = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, text
    rec = manifest(out)
    assert len(rec) == 6 and {r["status"] for r in rec.values()} == {"written"}
    check_manifest_matches_files(out)


def test_local_worker_killed_mid_series_then_batch_completes(synthetic, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(batch_argv(synthetic, "-o", out, "-f", "nii", "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid = kill_a_converting_worker(out, proc)
    text = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, text
    rec = manifest(out)
    assert len(rec) == 6 and {r["status"] for r in rec.values()} == {"written"}
    assert all(not r["worker"].endswith(f":{pid}") for r in rec.values())
    check_manifest_matches_files(out)
    assert len(volumes(out)) == 6


def test_run_killed_then_started_again_ends_as_an_uninterrupted_run(synthetic, tmp_path):
    ref = tmp_path / "ref"
    dicomrecon.batch([synthetic], ref, workers=2, fmt="nii")
    out = tmp_path / "out"
    for wait_records in (0, 2):  # killed while converting, then after some commits
        proc = subprocess.Popen(batch_argv(synthetic, "-o", out, "-f", "nii", "--workers", "2"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and proc.poll() is None:
            lines = (out / "dicomrecon-batch.jsonl").read_text().count('"status"') \
                if (out / "dicomrecon-batch.jsonl").exists() else 0
            if (out / ".dicomrecon-staging").exists() and lines >= wait_records:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers
        proc.wait()
    r = runner.invoke(app, ["batch", str(synthetic), "-o", str(out), "-f", "nii"])
    assert r.exit_code == 0, r.output
    check_manifest_matches_files(out)
    assert stable_state(out) == stable_state(ref)


def _rewrite(folder, **changes):
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        for k, v in changes.items():
            setattr(ds, k, v(ds) if callable(v) else v)
        ds.save_as(p)


def test_changed_series_is_converted_again_and_renamed_outputs_leave_no_orphans(synthetic,
                                                                                 tmp_path):
    src = tmp_path / "in"
    shutil.copytree(synthetic, src)
    out = tmp_path / "out"
    first = {r.series: r for r in dicomrecon.batch([src], out, workers=2, fmt="nii")}
    sha_before = {u: r["outputs"][0]["sha256"] for u, r in manifest(out).items()}
    s0, s1 = src / "p0" / "study0" / "s0", src / "p1" / "study1" / "s1"
    uid0 = pydicom.dcmread(next(s0.iterdir())).SeriesInstanceUID
    uid1 = pydicom.dcmread(next(s1.iterdir())).SeriesInstanceUID
    _rewrite(s0, SeriesDescription="renamed")                 # a new name set
    _rewrite(s1, RescaleIntercept=lambda ds: float(ds.RescaleIntercept) + 5)  # new values
    second = {r.series: r for r in dicomrecon.batch([src], out, workers=2, fmt="nii")}
    assert {u for u, r in second.items() if r.this_run == "converted"} == {uid0, uid1}
    assert all(r.status == "written" for r in second.values())
    assert "renamed" in second[uid0].outputs and not (out / first[uid0].outputs).exists()
    assert second[uid1].outputs == first[uid1].outputs
    sha_after = {u: r["outputs"][0]["sha256"] for u, r in manifest(out).items()}
    assert {u for u in sha_after if sha_after[u] != sha_before[u]} == {uid1}  # new values
    check_manifest_matches_files(out)
    assert len(volumes(out)) == 6


def test_bad_series_among_good_ones_and_timeouts(synthetic, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(synthetic, src, ignore=shutil.ignore_patterns("s2", "s3", "s4", "s5"))
    bad = src / "bad"
    shutil.copytree(synthetic / "p0" / "study2" / "s2", bad)
    uid_bad = pydicom.dcmread(next(bad.iterdir())).SeriesInstanceUID
    victim = sorted(bad.iterdir())[3]  # a header that reads, pixels that cannot be decoded
    ds = pydicom.dcmread(victim)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(victim, enforce_file_format=True)
    (src / "notes.txt").write_text("not DICOM")
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "-f", "nii", "--workers", "2"])
    assert r.exit_code == 4, r.output
    rec = manifest(out)
    seen = f"{r.output}\nmanifest: {rec}"  # what a failure (seen once under load) shows
    assert len(rec) == 3, seen
    assert rec[uid_bad]["status"] in ("failed", "refused") and rec[uid_bad]["reasons"], seen
    assert victim.name in " ".join(rec[uid_bad]["reasons"]), seen
    assert [x["status"] for u, x in rec.items() if u != uid_bad] == ["written", "written"], seen
    assert "notes.txt" in (out / "dicomrecon-batch-skipped.csv").read_text()
    check_manifest_matches_files(out)
    # every series over a 1 ms time limit (resampling one takes far longer): all failed
    out2 = tmp_path / "out2"
    r = runner.invoke(app, ["batch", str(synthetic / "p1"), "-o", str(out2), "-f", "nii",
                            "--workers", "1", "--task-timeout", "0.001"])
    assert r.exit_code == 4, r.output
    rec = manifest(out2)
    assert len(rec) == 3 and all(x["status"] == "failed" and "timed out" in x["reasons"][0]
                                 for x in rec.values()), f"{r.output}\nmanifest: {rec}"
    check_manifest_matches_files(out2)
    r = runner.invoke(app, ["batch", str(synthetic / "p1"), "-o", str(out2), "-f", "nii"])
    assert r.exit_code == 0, r.output  # failed series are tried again
    assert {x["status"] for x in manifest(out2).values()} == {"written"}, manifest(out2)


def test_layout_tokens_inputs_and_errors(corpus, tmp_path):
    from dicomrecon.batch.layout import DEFAULT_LAYOUT, layout_tokens
    assert DEFAULT_LAYOUT.split("/")[-1] == DEFAULT_NAME
    assert {"%n", "%d", "%i", "%u", "%g", "%a", "%s", "%y"} <= set(layout_tokens())
    for bad, why in [("/abs/%n", "relative"), ("%i/../%n", "relative"), ("%i/%q", "%q"),
                     ("%g/%n", "%g")]:
        r = runner.invoke(app, ["batch", str(corpus / "d2n_mr_rle"), "-o", str(tmp_path / "o"),
                                "--layout", bad])
        assert r.exit_code == 2 and why in r.output, r.output
    lst = tmp_path / "list.txt"
    lst.write_text(f"# inputs\n{corpus / 'd2n_mr_rle'}\n\n{corpus / 'd2n_mr_hitachi_oblique39'}\n")
    out = tmp_path / "o"
    r = runner.invoke(app, ["batch", "--from-list", str(lst), "-o", str(out),
                            "--layout", "%m/%a/%u_%g"])
    assert r.exit_code == 0, r.output
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    uids = {pydicom.dcmread(next((corpus / d).iterdir())).SeriesInstanceUID
            for d in ("d2n_mr_rle", "d2n_mr_hitachi_oblique39")}
    assert [n.split("/")[:2] for n in names] == [["MR", "20160309"], ["MR", "20171205"]]
    assert {n.split("/")[-1].rsplit("_", 1)[0] for n in names} == uids
    r = runner.invoke(app, ["batch", str(corpus / "d2n_mr_rle"), "-o",
                            str(corpus / "d2n_mr_rle" / "out")])
    assert r.exit_code == 6 and "inside the input" in r.output
    r = runner.invoke(app, ["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "o3")])
    assert r.exit_code == 7 and "missing" in r.output
    r = runner.invoke(app, ["batch", str(tmp_path / "list.txt"), "-o", str(tmp_path / "o4")])
    assert r.exit_code == 3 and "no DICOM" in r.output


def test_dicomdir_input_gives_the_volume_of_convert(corpus, tmp_path):
    from pydicom.fileset import FileSet
    src = corpus / "d2n_mr_hitachi_oblique39"
    fs = FileSet()
    for p in sorted(src.iterdir()):
        fs.add(pydicom.dcmread(p))
    fs.write(tmp_path / "media")  # DICOMDIR + PT000000/ST000000/SE000000/IM00000n
    ref = tmp_path / "ref"
    convert(str(src), str(ref), fmt="nii")
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(tmp_path / "media" / "DICOMDIR"), "-o", str(out),
                            "-f", "nii", "--workers", "1", "--progress"])
    assert r.exit_code == 0, r.output
    assert_same_volumes(volumes(out), volumes(ref))
    assert "DICOMDIR" in (out / "dicomrecon-batch-skipped.csv").read_text()  # listed, not lost


def _one_died_not_retried(out, rows_or_records: dict) -> str:
    """The series whose worker was killed is failed, not retried; every other one is written.
    Returns the failed series' UID."""
    bad = [u for u, st in rows_or_records.items() if st["status"] != "written"]
    assert len(bad) == 1, rows_or_records
    reasons = " ".join(rows_or_records[bad[0]]["reasons"])
    assert rows_or_records[bad[0]]["status"] == "failed" and "not retried" in reasons, reasons
    assert "died" in reasons and "1 time(s)" in reasons, reasons
    check_manifest_matches_files(out)
    return bad[0]


def test_retries_zero_local_pool_records_a_killed_series_as_failed(synthetic, tmp_path):
    """API: retries=0, one worker killed -9 while it converts: that series is failed at once;
    the run goes on and converts the rest; the next run (default retries) converts it."""
    out = tmp_path / "out"

    class Running:  # kill_a_converting_worker's "the batch still runs" check: it does
        @staticmethod
        def poll():
            return None

    killed = []
    killer = threading.Thread(target=lambda: killed.append(kill_a_converting_worker(out,
                                                                                    Running)))
    killer.start()
    rows = dicomrecon.batch([synthetic], out, workers=1, retries=0, fmt="nii")
    killer.join()
    assert killed, "no worker was killed"
    status = {r.series: {"status": r.status, "reasons": r.reasons.split(" | ")} for r in rows}
    uid = _one_died_not_retried(out, status)
    again = {r.series: r for r in dicomrecon.batch([synthetic], out, workers=1, fmt="nii")}
    assert again[uid].status == "written" and again[uid].this_run == "converted"
    assert {r.this_run for u, r in again.items() if u != uid} == {"up to date"}
    check_manifest_matches_files(out)


def test_retries_zero_on_dask_records_a_killed_series_as_failed(dask_cluster, synthetic,
                                                                tmp_path):
    """CLI: --retries 0 on the real cluster: Dask runs the task of the killed worker again,
    the task sees it was tried once already and records the series as failed."""
    out = tmp_path / "out"
    proc = subprocess.Popen(batch_argv(synthetic, "-o", out, "-f", "nii", "--scheduler",
                                       dask_cluster, "--retries", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    kill_a_converting_worker(out, proc)
    text = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == 4, text
    _one_died_not_retried(out, manifest(out))


def test_task_timeout_on_dask_kills_the_overrunning_series_only(dask_cluster, synthetic,
                                                                tmp_path):
    """--task-timeout on the real cluster: a series that overruns (the workers' test hook
    makes it sleep 600 s) is recorded as failed after the timeout, the others are written,
    and the workers are free again (the next run converts on them)."""
    src = tmp_path / "in"
    shutil.copytree(synthetic, src, ignore=shutil.ignore_patterns("s2", "s3", "s4", "s5"))
    write_series(SeriesSpec(rows=32, columns=32, n_slices=8, series_number=99,
                            series_description=SLOW_SERIES), src / "slow")
    uid_slow = series_uid(src / "slow")
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "-f", "nii",
                            "--scheduler", dask_cluster, "--task-timeout", "20"])
    assert r.exit_code == 4, r.output
    assert time.monotonic() - t0 < 300  # not the 600 s the slow series asks for
    rec = manifest(out)
    assert len(rec) == 3
    assert rec[uid_slow]["status"] == "failed", rec[uid_slow]
    assert rec[uid_slow]["reasons"] == ["timed out after 20 s (--task-timeout)"]
    assert {u: (x["status"], x["reasons"]) for u, x in rec.items() if u != uid_slow} == {
        u: ("written", []) for u in rec if u != uid_slow}
    check_manifest_matches_files(out)
    shutil.rmtree(src / "slow")
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "-f", "nii",
                            "--scheduler", dask_cluster, "--task-timeout", "60"])
    assert r.exit_code == 0, r.output  # the workers convert again; nothing to redo
    assert {x["status"] for u, x in manifest(out).items() if u != uid_slow} == {"written"}


HEAP_CHILD = r"""
import sys
from types import SimpleNamespace as NS
from dicomrecon.batch.heap import Heap
heap = Heap()
if heap.mallinfo2 is None:
    print("no-glibc"); sys.exit(0)
free = lambda: heap.libc.mallinfo2().fordblks
block = bytearray(64 << 20)          # from the heap now: M_MMAP_MAX is 0
del block
series = NS(files=[NS(rel="a/v.nii", bytes=100 << 20), NS(rel="a/v.json", bytes=900 << 20)])
heap.after(series)                   # keeps up to 150 MiB free: the 64 MiB stay
kept = free()
heap.after(object())                 # a header chunk: the bound is the worker's largest volume
still = free()
small = Heap()
small.keep = 0
block = bytearray(64 << 20)
del block
small.after(NS(files=[NS(rel="b.nii", bytes=1 << 20)]))   # beyond 1.5 MiB: handed back
print(kept >> 20, still >> 20, free() >> 20)
"""


def test_worker_heap_keeps_one_series_and_hands_back_the_rest():
    """The local worker's heap policy (batch/heap.py), in a process of its own: freed memory
    up to 1.5x the largest volume (not its sidecar) stays for the next series; beyond that it
    goes back to the system."""
    out = subprocess.run([sys.executable, "-c", HEAP_CHILD], capture_output=True, text=True,
                         check=True).stdout.split()
    if out == ["no-glibc"]:
        pytest.skip("not glibc: the policy does nothing")
    kept, still, after_trim = map(int, out)
    assert kept >= 64 and still >= 64
    assert after_trim < 16


def _file_with_study_id(path, raw):
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    if raw is not None:
        ds.add(DataElement(0x00200010, "SH", raw))
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def test_study_ids_through_gdcm_equal_pydicoms(corpus, tmp_path):
    """The layout's StudyID: GDCM's scanner where the value is plain, pydicom otherwise; the
    same text as pydicom's for every corpus file and for odd values (spaces, several values,
    UTF-8, NUL padding, empty, absent, not DICOM)."""
    from dicomrecon.batch.layout import read_study_id, read_study_ids
    odd = [b"  AB 12 ", b"X", b"", b"A\\B", "é1".encode(), b"Z\x00", None]
    paths = [_file_with_study_id(tmp_path / f"s{k}.dcm", raw) for k, raw in enumerate(odd)]
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    paths.append(str(tmp_path / "junk.dcm"))
    paths += sorted(str(p) for p in corpus.rglob("*") if p.is_file())
    ids = read_study_ids(paths)
    assert {p: ids[p] for p in paths} == {p: read_study_id(p) for p in paths}
    assert ids[paths[0]] == "  AB 12" and ids[paths[3]] == "['A', 'B']" and ids[paths[4]] == "é1"


READER_CHILD = r"""
import sys
from dicomrecon.batch.index import read_chunk
chunk = read_chunk(sys.argv[1:])
print(len(chunk.headers), [s for _, s in chunk.study_ids.values()][0], "pydicom" in sys.modules)
"""


def test_reading_a_ct_chunk_does_not_import_pydicom(tmp_path):
    """A reader of plain CT files (GDCM's scanner reads them whole) never imports pydicom, which
    costs each reader 0.2 s at start-up."""
    files = write_series(SeriesSpec(rows=8, columns=8, n_slices=5, extra_tags={"StudyID": "S77"}),
                         tmp_path)
    out = subprocess.run([sys.executable, "-c", READER_CHILD, *map(str, files)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["5", "S77", "False"]
