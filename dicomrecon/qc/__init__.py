"""Visual quality control: an HTML page of pictures for every conversion.

``write_qc(outdir)`` reads a conversion's sidecars, report and volumes and writes
``outdir/qc/index.html`` with its images beside it in ``qc/img/``; ``write_scan_qc(scan, dir)``
draws only the slice-position plots of a scan (no pixels decoded).  matplotlib (Agg) draws the
plots; the page is plain HTML and CSS, no JavaScript and nothing fetched from the network.
"""

from __future__ import annotations

from .page import write_qc, write_scan_qc

__all__ = ["write_qc", "write_scan_qc"]
