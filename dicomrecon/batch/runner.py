"""The batch driver: collect files, index them, plan one task per series, run the tasks on an
engine, commit each result as it arrives, and write the summary."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

from .. import __version__
from ..conversion import check_output_dir
from ..errors import ExitCode
from ..plan import DEFAULT_POLICY, Policy
from ..writers import extension, is_inside
from .engines import MAX_ATTEMPTS, DaskEngine, LocalEngine
from .index import Index, build_index, fingerprint, series_files
from .inputs import collect, input_roots
from .layout import DEFAULT_LAYOUT, Placement, check_layout, place, read_study_id, study_values
from .manifest import Manifest, Record
from .summary import CONVERTED, UP_TO_DATE, BatchProgress, SummaryRow, write_summary
from .task import FAILED, WRITTEN, SeriesTask, TaskResult, failed


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
    max_attempts: int = MAX_ATTEMPTS      # local pool: tries of a series whose worker died
    progress: bool = False
    sources: dict = field(default_factory=dict)  # retrieved folder -> its PACS source record


@dataclass
class BatchResult:
    rows: list                            # SummaryRow, one per series, in discovery order
    skipped: list                         # [(path, reason)] files that are no image
    n_files: int
    engine: str = ""
    outdir: str = ""

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
    for root in input_roots(opts.inputs, opts.from_list):
        check_output_dir(outdir, root)
    return outdir


def make_engine(opts: BatchOptions, echo: Callable):
    if opts.scheduler:
        return DaskEngine(opts.scheduler, timeout=opts.task_timeout, echo=echo)
    return LocalEngine(opts.workers, timeout=opts.task_timeout, max_attempts=opts.max_attempts)


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
    study_ids = {s.uid: read_study_id(s.first.path) for s in index.series}
    placements = place(index.series, opts.layout, study_ids)
    out = []
    for s in index.series:
        fp = fingerprint(s, index.stats)
        p = placements[s.uid]
        settings = settings_digest(opts, p)
        f = s.first
        meta = Record(s.uid, "", fp, settings, patient_id=f.patient_id,
                      study_instance_uid=f.study_instance_uid,
                      study=study_values(s, study_ids[s.uid])["%s"], series_number=f.series_number,
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


def run_batch(opts: BatchOptions, echo: Callable = print) -> BatchResult:
    """Convert every series under ``opts.inputs`` into ``opts.outdir`` (see README, "Batch")."""
    extension(opts.fmt)
    check_layout(opts.layout)
    files = collect(opts.inputs, opts.from_list)
    outdir = prepare_outdir(opts)
    manifest = Manifest(outdir).open()
    try:
        with make_engine(opts, echo) as engine, BatchProgress(opts.progress) as bar:
            index = build_index(files, engine.map_chunks, progress=bar.headers)
            planned = plan(index, manifest, opts, outdir)
            bar.start_series(len(planned))
            rows = {}
            for item in planned:
                if item.task is None:
                    row = SummaryRow.from_record(item.meta, UP_TO_DATE)
                    rows[row.series] = row
                    bar.series_done(row.volumes, item.input_bytes, False)
            by_uid = {item.meta.series_instance_uid: item for item in planned}

            def on_result(res: TaskResult) -> None:
                item = by_uid[res.uid]
                if res.uid in rows:  # a second copy of a task (a retried task that also
                    manifest.drop_staging(res)  # finished): never committed twice
                    return
                rec = _record(item.meta, res)
                rec = manifest.commit(res, rec) if res.status != FAILED else manifest.record(rec)
                rows[res.uid] = SummaryRow.from_record(rec, CONVERTED)
                bar.series_done(res.volumes, item.input_bytes, rec.status == FAILED)

            engine.run([i.task for i in planned if i.task is not None], on_result)
            for item in planned:  # an engine must answer for every task; record it if not
                if item.meta.series_instance_uid not in rows:
                    on_result(failed(item.task, "the engine returned no result for it"))
            engine_name = engine.description
        manifest.compact()
    finally:  # interrupted or not: no staging left behind (a killed run's is removed next run)
        manifest.close()
    ordered = [rows[i.meta.series_instance_uid] for i in planned]
    write_summary(outdir, ordered, index.skipped)
    return BatchResult(ordered, index.skipped, index.n_files, engine_name, outdir)


def _record(meta: Record, res: TaskResult) -> Record:
    return Record(**{**meta.__dict__, "status": res.status, "reasons": list(res.reasons),
                     "findings": list(res.findings), "seconds": round(res.seconds, 3),
                     "worker": res.worker, "worker_peak_rss": res.worker_peak_rss,
                     "outputs": []})
