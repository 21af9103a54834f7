"""Visual quality control: an HTML page of pictures for every conversion.

``write_qc(outdir)`` reads a conversion's sidecars, report and volumes and writes
``outdir/qc/index.html`` with its images beside it in ``qc/img/``; ``write_scan_qc(scan, dir)``
draws only the slice-position plots of a scan (no pixels decoded).  matplotlib (Agg) draws the
plots; the page is plain HTML and CSS, no JavaScript and nothing fetched from the network.

Nothing heavy is imported with the package: the CLI registers its command from here.
"""

from __future__ import annotations


def write_qc(outdir: str, cuts: dict | None = None) -> str:
    """Write ``OUTDIR/qc/index.html`` for a conversion; return its path.  ``cuts``: see
    :class:`Collector`."""
    require_matplotlib()
    from .page import write_qc as _write
    return _write(outdir, cuts)


class Collector:
    """``convert(..., on_output=collector)`` keeps each written volume's mid-planes (a few
    hundred kB), so the QC page needs not read the volumes back; pass ``collector.cuts`` to
    :func:`write_qc`."""

    def __init__(self):
        self.cuts: dict = {}

    def __call__(self, output, array) -> None:
        import os
        from .planes import cuts_of
        if array.ndim == 4 and array.shape[-1] != 3:  # --4d: (t, z, y, x), t = 0 shown
            array = array[0]
        self.cuts[os.path.abspath(output.path)] = cuts_of(array)


def write_scan_qc(result, folder: str, policy=None) -> str:
    """Write the slice-position plots of a scan into ``folder/index.html``; return its path."""
    require_matplotlib()
    from .page import write_scan_qc as _write
    return _write(result, folder, policy)


_PRELOAD: list = []


def preload() -> None:
    """Import matplotlib and draw a tiny figure (fonts loaded) in a background thread.

    ``convert --qc`` calls this before converting: that fixed cost of the page then overlaps
    with decoding and writing, which spend their time in numpy, file I/O and ISA-L, outside the
    interpreter lock.  :func:`require_matplotlib` waits for it before any drawing.
    """
    import threading

    def work():
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=(1, 1), dpi=20)
            fig.add_subplot().plot([0, 1], label="x")
            FigureCanvasAgg(fig).draw()
        except Exception:  # reported by require_matplotlib when the page is written
            pass
    t = threading.Thread(target=work, name="qc-preload", daemon=True)
    t.start()
    _PRELOAD.append(t)


def require_matplotlib() -> None:
    """Raise a one-line error naming the extra to install when matplotlib is missing."""
    while _PRELOAD:
        _PRELOAD.pop().join()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from ..errors import DicomReconError
        raise DicomReconError("the QC report needs matplotlib, which is not installed",
                              hint="pip install 'dicomrecon[qc]'") from None


__all__ = ["write_qc", "write_scan_qc", "Collector"]
