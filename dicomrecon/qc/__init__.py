"""Visual quality control: an HTML page of pictures for every conversion.

``write_qc(outdir)`` reads a conversion's sidecars, report and volumes and writes
``outdir/qc/index.html`` with its images beside it in ``qc/img/``; ``write_scan_qc(scan, dir)``
draws only the slice-position plots of a scan (no pixels decoded).  matplotlib (Agg) draws the
plots; the voxel pictures are plain arrays written as PNG by Pillow; the page is plain HTML and
CSS, no JavaScript and nothing fetched from the network.

Nothing heavy is imported with the package: the CLI registers its command from here.
"""

from __future__ import annotations

import os


def write_qc(outdir: str, kept: dict | None = None) -> str:
    """Write ``OUTDIR/qc/index.html`` for a conversion; return its path.  ``kept``: see
    :class:`Collector`."""
    require_matplotlib()
    from .page import write_qc as _write
    return _write(outdir, kept)


class Collector:
    """What ``convert --qc`` keeps of each volume while it converts, so the page needs not
    read the volumes back nor decode the sources again: pass it as ``convert(on_output=c,
    on_decoded=c.decoded)`` and ``c.kept`` to :func:`write_qc`.

    * ``decoded(plan, array)`` (before any resampling): the naive stack's plane of a resampled
      volume (:func:`~.naive.source_cut_of_plan`), and its slice-position plot, drawn by the
      helper process (:func:`preload`) while the volume is resampled and written;
    * ``__call__(output, array)`` (after writing): its mid-planes (a few hundred kB).
    """

    def __init__(self):
        self.kept: dict = {}       # output path -> Kept
        self._decoded: dict = {}   # plan label -> (SourceCut or None, PrePlot or None)

    def decoded(self, vp, array) -> None:
        from .model import positions_from_plan
        from .naive import source_cut_of_plan
        cut = source_cut_of_plan(vp, array) if vp.kind == "resample" else None
        sp = positions_from_plan(vp)
        self._decoded[vp.label] = (cut, None if sp is None else _background(_PrePlot(sp)))

    def __call__(self, output, array) -> None:
        from .render import Kept
        from .planes import cuts_of
        four_d = len(output.shape_xyz) == 4  # (t, z, y, x); RGB is (z, y, x, 3), 3D shape
        first = output.group.split("+")[0]    # a --4d set: its first volume was decoded first
        cut, plot = self._decoded.pop(first, (None, None))
        self._decoded.clear()                 # a refused volume's leftovers
        self.kept[os.path.abspath(output.path)] = Kept(cuts_of(array, time_axis=four_d), cut,
                                                       plot)


class _PrePlot:
    """A slice-position plot drawn ahead of the page: the positions and the future of the PNG
    bytes and the data drawn.  The page uses it only if the sidecar holds the same positions,
    and draws the plot itself if the helper failed."""

    def __init__(self, sp):
        self.sp = sp
        self.future = None


def _draw(sp):
    """In the helper process: the plot of ``sp`` as PNG bytes, and the data drawn."""
    import io
    from .positions import position_plot
    buf = io.BytesIO()
    data = position_plot(sp, buf)
    return buf.getvalue(), data


_WORKER: list = []  # [ProcessPoolExecutor] once started


def preload() -> None:
    """Start one helper process (forked now, while the process is small and has no other
    thread) that imports matplotlib and draws a tiny figure (fonts loaded), then draws the
    plots :func:`_background` sends it.

    ``convert --qc`` calls this before converting.  matplotlib's import (~0.5 s of CPU) and the
    plots are pure Python: in a thread they held the interpreter lock against the conversion's
    I/O and compression loop and slowed it by more than they cost (measured: decode + write
    0.8 s -> 1.9 s); a process runs them on the other core.  :func:`require_matplotlib`
    waits for it before the page is written.
    """
    if _WORKER:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform: the page draws its plots itself
        return
    _WORKER.append(ProcessPoolExecutor(1, mp_context=ctx, initializer=_warm))
    _WORKER[0].submit(int)  # start it now


def _warm() -> None:
    """The helper's start: leave SIGINT to the parent (which cleans up and stops it), take
    SIGTERM and SIGHUP's defaults (no handler of the parent's runs here), import and warm."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(1, 1), dpi=20)
        fig.add_subplot().plot([0, 1], label="x")
        FigureCanvasAgg(fig).draw()
    except Exception:  # the page then draws, or reports the missing extra
        pass


def _background(job: _PrePlot) -> _PrePlot:
    """Send ``job`` to the helper process, or leave it to the page when there is none."""
    if _WORKER:
        try:
            job.future = _WORKER[0].submit(_draw, job.sp)
        except RuntimeError:  # the helper died (broken pool): the page draws it
            job.future = None
    return job


def write_scan_qc(result, folder: str, policy=None) -> str:
    """Write the slice-position plots of a scan into ``folder/index.html``; return its path."""
    require_matplotlib()
    from .page import write_scan_qc as _write
    return _write(result, folder, policy)


def require_matplotlib() -> None:
    """Wait for the helper's work; raise a one-line error naming the extra to install when
    matplotlib is missing (found, not imported: the helper may have drawn everything)."""
    while _WORKER:
        _WORKER.pop().shutdown(wait=True)
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        from ..errors import DicomReconError
        raise DicomReconError("the QC report needs matplotlib, which is not installed",
                              hint="pip install 'dicomrecon[qc]'") from None


__all__ = ["write_qc", "write_scan_qc", "Collector"]
