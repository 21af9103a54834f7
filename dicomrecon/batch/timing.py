"""Where a batch's wall time goes: each phase of the driver with its wall and CPU time.

``run_batch`` returns them in ``BatchResult.phases``; ``scripts/bench_batch.py`` prints them
beside the workers' own conversion and CPU times (from the manifest).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class Phase:
    name: str
    start: float                  # seconds since the run started
    wall: float                   # seconds
    cpu: float                    # the driver's CPU seconds (all its threads)


@dataclass
class Phases:
    """Phases of one run, in the order they ended (phases may overlap: ``workers start`` runs
    in a thread while the driver lists and reads the input)."""

    t0: float = field(default_factory=time.perf_counter)
    rows: list = field(default_factory=list)

    @contextmanager
    def __call__(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, w, time.perf_counter() - w, time.process_time() - c)

    def add(self, name: str, started: float, wall: float, cpu: float = 0.0) -> None:
        """Record a phase that started at ``started`` (time.perf_counter()) and took ``wall``."""
        self.rows.append(Phase(name, round(started - self.t0, 4), round(wall, 4), round(cpu, 4)))

    def save(self, path: Optional[str]) -> None:
        """Write the phases to ``path`` as JSON (nothing when ``path`` is empty)."""
        if path:
            with open(path, "w", encoding="utf-8") as fp:
                json.dump([asdict(p) for p in self.rows], fp, indent=1)
