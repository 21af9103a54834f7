"""The batch driver: collect files, index them, plan one task per series, run the tasks on an
engine, commit each result as it arrives, and write the summary."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .. import __version__
from ..conversion import check_output_dir
from ..errors import ExitCode
from ..plan import DEFAULT_POLICY, Policy
from ..writers import extension, is_inside
from .engines import DaskEngine, LocalEngine
from .index import Index, build_index, fingerprint, series_files
from .commit import Committer, volumes_of
from .inputs import collect, input_roots
from .layout import (DEFAULT_LAYOUT, DEFAULT_RETRIES, Placement, check_layout, place,
                     study_values)
from .manifest import Manifest, Record, fsync_dir
from .summary import UP_TO_DATE, BatchProgress, SummaryRow, write_summary
from .task import FAILED, WRITTEN, SeriesTask, TaskResult, failed
from .timing import Phases


#: A file to write the run's phases to (JSON), for scripts/bench_batch.py.
TIMINGS_ENV = "DICOMRECON_BATCH_TIMINGS"


@dataclass
class BatchOptions:
    inputs: list
    outdir: str
    from_list: Optional[str] = None
    fmt: str = "nii.gz"
    layout: str = DEFAULT_LAYOUT
    policy: Policy = DEFAULT_POLICY
    workers: Optional[int] = None         # local pool size (default: number of cores)
    scheduler: Optional[str] = None       # Dask scheduler address: run there instead
    task_timeout: Optional[float] = None  # seconds per series
    retries: int = DEFAULT_RETRIES        # tries again of a series whose worker died
    progress: bool = False
    sources: dict = field(default_factory=dict)  # retrieved folder -> its PACS source record


@dataclass
class BatchResult:
    rows: list                            # SummaryRow, one per series, in discovery order
    skipped: list                         # [(path, reason)] files that are no image
    n_files: int
    engine: str = ""
    outdir: str = ""
    phases: list = field(default_factory=list)  # timing.Phase: where the wall time went

    @property
    def exit_code(self) -> ExitCode:
        if not self.rows:
            return ExitCode.NO_DICOM
        if all(r.status == WRITTEN for r in self.rows):
            return ExitCode.OK
        return ExitCode.PARTIAL


@dataclass
class _Planned:
    """What the driver knows about one series while its task runs."""

    meta: Record                          # the record to fill in once the task returns
    task: Optional[SeriesTask] = None
    input_bytes: int = 0


def prepare_outdir(opts: BatchOptions) -> str:
    """OUTDIR, created, checked to lie inside no input (call after the inputs are checked)."""
    outdir = os.path.abspath(opts.outdir)
    created = not os.path.isdir(outdir)
    for root in input_roots(opts.inputs, opts.from_list):
        check_output_dir(outdir, root)
    if created:  # its name made durable, as the manifest's will be (manifest.fsync_dir)
        fsync_dir(os.path.dirname(outdir))
    return outdir


def make_engine(opts: BatchOptions, echo: Callable, phases: Optional[Phases] = None):
    if opts.scheduler:
        return DaskEngine(opts.scheduler, timeout=opts.task_timeout, retries=opts.retries,
                          echo=echo)
    return LocalEngine(opts.workers, timeout=opts.task_timeout, retries=opts.retries,
                       phases=phases)


def settings_digest(opts: BatchOptions, placement: Placement) -> str:
    """What, besides the inputs, decides a series' outputs: a change means converting again."""
    text = json.dumps({"format": opts.fmt, "policy": opts.policy.to_dict(),
                       "folder": placement.folder, "name": placement.name,
                       "dicomrecon": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def series_root(series, outdir: str) -> str:
    """What a series' sidecar names as its input, source files relative to its folder: the
    deepest folder holding all of them, or its first file when that folder holds OUTDIR
    (convert never writes into its input)."""
    files = series_files(series)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files])
    return os.path.abspath(files[0]) if is_inside(outdir, root) else root


def remote_source(series, sources: dict) -> Optional[dict]:
    """The PACS source record (URL, UIDs) of a series retrieved from a URL input, or None."""
    first = os.path.abspath(series.first.path)
    for folder, source in sources.items():
        if is_inside(first, folder):
            return source
    return None


def plan(index: Index, manifest: Manifest, opts: BatchOptions, outdir: str) -> list:
    """A :class:`_Planned` per series: a task, or the up-to-date record when nothing changed."""
    placements = place(index.series, opts.layout, index.study_ids)
    out = []
    for s in index.series:
        fp = fingerprint(s, index.stats)
        p = placements[s.uid]
        settings = settings_digest(opts, p)
        f = s.first
        meta = Record(s.uid, "", fp, settings, patient_id=f.patient_id,
                      study_instance_uid=f.study_instance_uid,
                      study=study_values(s, index.study_ids.get(s.uid, ""))["%s"],
                      series_number=f.series_number,
                      series_description=f.series_description, modality=f.modality)
        item = _Planned(meta, input_bytes=fp["bytes"])
        done = manifest.up_to_date(s.uid, fp, settings)
        if done is not None:
            item.meta = done
        else:
            item.task = SeriesTask(s.uid, s, series_root(s, outdir), manifest.staging, p.folder,
                                   p.name, opts.fmt, opts.policy, opts.task_timeout, fp["bytes"],
                                   remote_source(s, opts.sources))
        out.append(item)
    return out


def largest_first(planned: list) -> list:
    """The tasks to run, largest input first: the long series start early and the short ones
    fill the end, so no worker idles at the end while another converts a big series."""
    tasks = [i.task for i in planned if i.task is not None]
    return sorted(tasks, key=lambda t: -t.input_bytes)


def run_batch(opts: BatchOptions, echo: Callable = print) -> BatchResult:
    """Convert every series under ``opts.inputs`` into ``opts.outdir`` (see README, "Batch")."""
    phases = Phases()
    extension(opts.fmt)
    check_layout(opts.layout)
    # The local pool starts (and imports the conversion code) in the background meanwhile.
    with make_engine(opts, echo, phases) as engine:
        with phases("list files"):
            files = collect(opts.inputs, opts.from_list)
            outdir = prepare_outdir(opts)
        manifest = Manifest(outdir).open()
        try:
            with BatchProgress(opts.progress) as bar:
                with phases("discovery"):
                    index = build_index(files, engine.map_chunks, progress=bar.headers,
                                        phases=phases)
                with phases("plan"):
                    planned = plan(index, manifest, opts, outdir)
                rows = _convert(planned, engine, manifest, bar, phases)
            engine_name = engine.description
            with phases("compact manifest"):
                manifest.compact()
        finally:  # interrupted or not: no staging left (a killed run's is removed next run)
            manifest.close()
    phases.add("manifest fsync (in commit)", phases.t0, manifest.sync_seconds)
    with phases("summary"):
        ordered = [rows[i.meta.series_instance_uid] for i in planned]
        write_summary(outdir, ordered, index.skipped)
    phases.add("total (driver)", phases.t0, time.perf_counter() - phases.t0, time.process_time())
    phases.save(os.environ.get(TIMINGS_ENV))
    return BatchResult(ordered, index.skipped, index.n_files, engine_name, outdir, phases.rows)


def _convert(planned: list, engine, manifest: Manifest, bar, phases: Phases) -> dict:
    """Run the tasks; commit the results as they arrive (:mod:`.commit`); a row per series."""
    bar.start_series(len(planned))
    rows = {}
    for item in planned:
        if item.task is None:
            row = SummaryRow.from_record(item.meta, UP_TO_DATE)
            rows[row.series] = row
            bar.series_done(row.volumes, item.input_bytes, False)
    by_uid = {item.meta.series_instance_uid: item for item in planned}
    committer = Committer(
        manifest, rows, lambda res: _record(by_uid[res.uid].meta, res),
        lambda rec: bar.series_done(volumes_of(rec), by_uid[rec.series_instance_uid].input_bytes,
                                    rec.status == FAILED))
    try:
        with phases("convert"):
            engine.run(largest_first(planned), committer.put)
    finally:  # interrupted or not: what finished is recorded before the manifest closes
        committer.close()
    missing = [failed(i.task, "the engine returned no result for it") for i in planned
               if i.meta.series_instance_uid not in rows]
    if missing:  # an engine must answer for every task; record it if not
        committer.commit(missing)
    return rows


def _record(meta: Record, res: TaskResult) -> Record:
    return Record(**{**meta.__dict__, "status": res.status, "reasons": list(res.reasons),
                     "findings": list(res.findings), "seconds": round(res.seconds, 3),
                     "cpu_seconds": round(res.cpu_seconds, 3), "worker": res.worker,
                     "worker_peak_rss": res.worker_peak_rss, "outputs": []})
