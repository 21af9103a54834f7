"""Progress while a batch runs, and its summary: counts by status and
``OUTDIR/dicomrecon-batch-summary.csv`` (one row per series)."""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import astuple, dataclass, fields
from typing import Optional

from ..writers import atomic_path
from .manifest import Record

SUMMARY = "dicomrecon-batch-summary.csv"
SKIPPED = "dicomrecon-batch-skipped.csv"
CONVERTED, UP_TO_DATE = "converted", "up to date"


@dataclass
class SummaryRow:
    patient: str
    study: str
    study_instance_uid: str
    series: str                   # SeriesInstanceUID
    series_number: Optional[int]
    description: str
    modality: str
    status: str                   # written, refused, failed
    this_run: str                 # converted, or up to date (skipped)
    volumes: int
    outputs: str                  # volume files, ";"-separated, relative to OUTDIR
    findings: str                 # finding codes, ";"-separated
    reasons: str                  # refusal / failure reasons, " | "-separated

    @classmethod
    def from_record(cls, r: Record, this_run: str) -> "SummaryRow":
        vols = [o["file"] for o in r.outputs if not o["file"].endswith(".json")]
        return cls(r.patient_id, r.study, r.study_instance_uid, r.series_instance_uid,
                   r.series_number, r.series_description, r.modality, r.status, this_run,
                   len(vols), ";".join(vols), ";".join(r.findings), " | ".join(r.reasons))


def write_csv(path: str, header: list, rows: list) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fp:
            w = csv.writer(fp)
            w.writerow(header)
            w.writerows(rows)


def write_summary(outdir: str, rows: list, skipped: list) -> None:
    write_csv(os.path.join(outdir, SUMMARY), [f.name for f in fields(SummaryRow)],
              [astuple(r) for r in rows])
    write_csv(os.path.join(outdir, SKIPPED), ["file", "reason"], skipped)


def counts_table(rows: list) -> str:
    """Counts by status and by what this run did, as a small text table."""
    keys = sorted({(r.status, r.this_run) for r in rows})
    lines = [f"{'status':<10} {'this run':<11} {'series':>7} {'volumes':>8}"]
    for status, run in keys:
        sel = [r for r in rows if r.status == status and r.this_run == run]
        lines.append(f"{status:<10} {run:<11} {len(sel):>7} {sum(r.volumes for r in sel):>8}")
    lines.append(f"{'total':<22} {len(rows):>7} {sum(r.volumes for r in rows):>8}")
    return "\n".join(lines)


class BatchProgress:
    """A rich progress bar on stderr: series done/total, volumes, MB/s of input, ETA, failures."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.t0 = time.perf_counter()
        self.bytes = 0
        self.volumes = 0
        self.failures = 0

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                                MofNCompleteColumn(), "{task.fields[info]}", TimeElapsedColumn(),
                                "ETA", TimeRemainingColumn(),
                                console=Console(file=sys.stderr), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def headers(self, done: int, total: int) -> None:
        if self.bar:
            if self.task is None:
                self.task = self.bar.add_task("reading headers", total=total, info="files")
            self.bar.update(self.task, completed=done, total=total)

    def start_series(self, total: int) -> None:
        self.t0 = time.perf_counter()
        if self.bar:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task("series", total=total, info="")

    def series_done(self, volumes: int, input_bytes: int, failed: bool) -> None:
        self.volumes += volumes
        self.bytes += input_bytes
        self.failures += failed
        if self.bar:
            rate = self.bytes / 1e6 / max(1e-6, time.perf_counter() - self.t0)
            self.bar.update(self.task, advance=1, info=(
                f"{self.volumes} volumes, {rate:.1f} MB/s, {self.failures} failed"))
