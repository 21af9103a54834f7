"""``dicomrecon batch``: convert a whole archive, on a local pool or a Dask cluster, resumably.

Modules, in the order the data flows: :mod:`.inputs` (which files), :mod:`.index` (headers read
in parallel chunks, grouped as ``convert`` groups them), :mod:`.layout` (where each series
goes), :mod:`.task` (one series, converted by ``convert``'s code into a staging folder),
:mod:`.engines` (local pool or Dask), :mod:`.manifest` (commit, resume), :mod:`.summary`
(progress, CSV), :mod:`.runner` (the driver) and :mod:`.cli`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Iterable, Optional, Union

from .layout import DEFAULT_LAYOUT, DEFAULT_RETRIES, STUDY_TOKENS, layout_tokens


def batch(inputs: Union[str, os.PathLike, Iterable], outdir: Union[str, os.PathLike], *,
          workers: Optional[int] = None, scheduler: Optional[str] = None, policy=None,
          fmt: str = "nii.gz", layout: str = DEFAULT_LAYOUT, from_list: Optional[str] = None,
          task_timeout: Optional[float] = None, retries: Optional[int] = None) -> list:
    """Convert every series under ``inputs`` (folders, files, DICOMDIRs) into ``outdir``.

    Runs on ``workers`` local processes (default: one per core), or on the workers of the Dask
    scheduler at ``scheduler`` (``"tcp://host:8786"``), which must see the same paths.  Returns
    one :class:`~dicomrecon.batch.summary.SummaryRow` per series (status ``written``,
    ``refused`` or ``failed``); the same rows are in ``outdir/dicomrecon-batch-summary.csv``.
    Running it again converts only what changed.  A series running longer than
    ``task_timeout`` seconds is recorded as failed; one whose worker process died is tried again
    ``retries`` times (default 2) before it is.
    """
    from ..plan import DEFAULT_POLICY
    from .runner import BatchOptions, run_batch
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    opts = BatchOptions([os.fspath(p) for p in inputs], os.fspath(outdir), from_list=from_list,
                        fmt=fmt, layout=layout, policy=policy or DEFAULT_POLICY,
                        workers=workers, scheduler=scheduler, task_timeout=task_timeout,
                        retries=DEFAULT_RETRIES if retries is None else retries)
    return run_batch(opts, echo=lambda *a: None).rows


class _CallableModule(types.ModuleType):
    """``dicomrecon.batch`` is this package and the API function at once:
    ``dicomrecon.batch(inputs, outdir, ...)`` calls :func:`batch`."""

    def __call__(self, *args, **kwargs):
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["batch", "DEFAULT_LAYOUT", "STUDY_TOKENS", "layout_tokens"]
