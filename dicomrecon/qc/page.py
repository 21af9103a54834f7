"""The QC page: ``OUTDIR/qc/index.html``, its pictures in ``OUTDIR/qc/img/``.

Plain HTML and CSS from a string template: no JavaScript, nothing fetched from the network, so
the page opens from the file system in any browser.  Images are lazy-loaded with their sizes
given, so a page of 100 volumes opens at once.  The folder is written beside the final one and
renamed into place: an interrupted run never leaves a half-written page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from html import escape
from string import Template
from typing import Optional

from .model import ConversionQC, RefusedInfo, SkippedInfo, VolumeInfo, positions_from_geometry
from .model import read_conversion
from .render import Picture, Rendered, plot_positions, render_volume

STATUS_COLOURS = {"stack": "#2a7d2e", "resampled": "#d98a00", "split": "#7b3fb5",
                  "refused": "#c62828", "sheared": "#00838f", "placeholder": "#757575",
                  "scanned": "#1f5f99"}
STATUS_WORDS = {"stack": "plain stack", "resampled": "resampled", "split": "split",
                "refused": "refused", "sheared": "sheared (tilt kept)",
                "placeholder": "no geometry (placeholder)", "scanned": "scanned stack"}

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>$title</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}
h1{font-size:1.5em}h2{font-size:1.2em;border-top:2px solid #ccc;padding-top:.6em}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}
.thumb{display:block;width:120px;border:4px solid;border-radius:4px;padding:2px;
 text-decoration:none;color:#222;background:#fff;font-size:11px;overflow:hidden}
.thumb img{display:block;margin:auto}.thumb .none{height:60px;line-height:60px;text-align:center}
.badge{color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em}
.planes{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.plane{display:grid;grid-template-columns:auto auto auto;align-items:center;justify-items:center;
 font-weight:bold;color:#b00;background:#fff;border:1px solid #ddd;padding:4px}
.plane .cap{grid-column:1/4;font-weight:normal;color:#444;font-size:12px}
.plane img{background:#000}.strip .plane .cap{font-size:11px}
table.kv td{padding:1px 8px;vertical-align:top}table.kv td:first-child{color:#555}
.sev-error{color:#c62828}.sev-warning{color:#b36b00}.sev-info{color:#555}
.legend span{display:inline-block;margin-right:1em}
.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:.3em}
.err{color:#c62828}code{font-size:12px}
</style></head><body>
<h1>$title</h1>
$summary
$sections
</body></html>
""")


def _img(p: Picture, alt: str) -> str:
    return (f'<img src="{escape(p.src)}" width="{p.width}" height="{p.height}" '
            f'loading="lazy" alt="{escape(alt)}">')


def _plane_html(p: Picture, alt: str) -> str:
    """A picture with its orientation letters on the four edges (a 3 x 3 grid)."""
    L = p.letters or {"top": "", "left": "", "right": "", "bottom": ""}
    return (f'<div class="plane"><span></span><span class="top">{escape(L["top"])}</span>'
            f'<span></span><span class="left">{escape(L["left"])}</span>{_img(p, alt)}'
            f'<span class="right">{escape(L["right"])}</span><span></span>'
            f'<span class="bottom">{escape(L["bottom"])}</span><span></span>'
            f'<span class="cap">{escape(p.title)}</span></div>')


def _kv(rows: list) -> str:
    return '<table class="kv">' + "".join(
        f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows
        if v not in (None, "", [], {})) + "</table>"


def _findings(findings: list) -> str:
    if not findings:
        return "<p>No findings.</p>"
    return "<ul>" + "".join(
        f'<li class="sev-{escape(f.severity)}"><b>{escape(f.code)}</b> ({escape(f.severity)}): '
        f"{escape(f.message)}</li>" for f in findings) + "</ul>"


def _badge(status: str) -> str:
    return (f'<span class="badge" style="background:{STATUS_COLOURS[status]}">'
            f"{STATUS_WORDS[status]}</span>")


def volume_html(vol: VolumeInfo, r: Rendered) -> str:
    s = vol.series
    out = [f'<section id="{r.anchor}"><h2>{escape(vol.label)}: '
           f"{escape(os.path.basename(vol.path))} {_badge(vol.status)}</h2>"]
    out += [f'<p class="err">{escape(e)}</p>' for e in r.errors]
    out.append(_kv([
        ("series", f"{s.number} {s.description or '(no description)'} ({s.modality}, "
                   f"{s.manufacturer})"),
        ("series UID", s.uid), ("group", vol.label),
        ("size", " x ".join(map(str, vol.shape)) + (" RGB" if vol.components == 3 else "")),
        ("reconstruction", vol.reconstruction), ("split keys", vol.split_keys),
        ("4th axis", f"{vol.fourth_axis}: {vol.n_fourth} volumes (t = 0 to {vol.n_fourth - 1})"
         if vol.fourth_axis else None),
        ("policy", ", ".join(f"{k}={v}" for k, v in vol.policy.items())),
        ("sidecar", os.path.basename(vol.sidecar))]))
    out.append("<h3>Findings</h3>" + _findings(vol.findings))
    out.append("<h3>Processing</h3><ul>" + "".join(f"<li>{escape(p)}</li>"
                                                    for p in vol.processing) + "</ul>")
    if r.planes:
        out.append(f"<h3>Mid-planes{' at t = 0' if r.last_planes else ''} (true aspect; "
                   "letters: R/L, A/P, H(ead)/F(eet))</h3>" + _sheared_note(vol)
                   + _planes_html(r.planes, vol.label))
    if r.last_planes:
        out.append(_fourth_axis_html(vol, r))
    if r.before and r.after:
        out.append(_before_after_html(vol, r))
    if r.plot:
        out.append("<h3>Slice positions</h3>" + _img(r.plot, f"{vol.label} slice positions"))
    return "\n".join(out) + "</section>"


def _planes_html(pics: list, label: str, cls: str = "planes") -> str:
    return (f'<div class="{cls}">' + "".join(_plane_html(p, f"{label} {p.title}") for p in pics)
            + "</div>")


def _sheared_note(vol: VolumeInfo) -> str:
    if vol.reconstruction != "sheared":
        return ""
    return ('<p><span class="sw" style="background:rgb(72,64,96)"></span>The grid is sheared '
            "(the tilt kept as acquired): the planes holding the slice axis are drawn in world "
            "geometry, each slice shifted by its origin's in-plane offset, so they are "
            "parallelograms; this colour is outside the grid. A viewer that ignores the shear "
            "shows them as rectangles, the anatomy slanted.</p>")


def _fourth_axis_html(vol: VolumeInfo, r: Rendered) -> str:
    """A 4D volume: the mid-planes at the last t, and the mid-slice across t."""
    last = vol.n_fourth - 1
    value = f" ({vol.fourth_values[last]})" if last < len(vol.fourth_values) else ""
    return (f"<h3>Mid-planes at the last t = {last}{value}</h3>"
            + _planes_html(r.last_planes, vol.label)
            + f"<h3>The mid-slice across the 4th axis ({escape(str(vol.fourth_axis))}), "
            f"{len(r.strip)} of {vol.n_fourth} volumes</h3><p>One grey window for all: a volume "
            "brighter, darker, shifted or from another series than its neighbours stands "
            "out. Oriented like the first mid-plane above.</p>"
            + _planes_html(r.strip, vol.label, "planes strip"))


def _before_after_html(vol: VolumeInfo, r: Rendered) -> str:
    ba, res = r.comparison, vol.resample
    n_interp = int(ba.interpolated.sum())
    legend = (f'<p class="legend"><span><i class="sw" style="background:#ff8c00"></i>'
              f"inside a gap: {n_interp} output slice(s) interpolated across missing data</span>"
              f'<span><i class="sw" style="background:#00beff"></i>fill value '
              f"{res.fill_value:g}: {res.fill_fraction:.1%} of the volume, outside every "
              f"acquired slice</span></p>")
    return ("<h3>Before and after</h3><p>Left: the source slices stacked one after another as "
            "a naive tool shows them (median step, origins assumed aligned). Right: the written "
            f"volume ({res.interpolation} interpolation, {res.spacing_mm:.4g} mm slices).</p>"
            + legend + '<div class="planes">' + _plane_html(r.before, "before")
            + _plane_html(r.after, "after") + "</div>")


def refused_html(anchor: str, ref: RefusedInfo) -> str:
    return (f'<section id="{anchor}"><h2>{escape(ref.group)}: {_badge("refused")}</h2>'
            + _kv([("series UID", ref.series_uid)]) + _findings(ref.reasons) + "</section>")


def skipped_html(skipped: list) -> str:
    """One section per skipped file, after a heading the summary links to."""
    if not skipped:
        return ""
    return '<h2 id="skipped">Skipped files</h2>' + "".join(
        f'<section id="s{k}"><p><b>skipped</b> <code>{escape(s.file)}</code>: '
        f"{escape(s.reason)}</p></section>" for k, s in enumerate(skipped, start=1))


def _thumb(anchor: str, status: str, label: str, pic: Optional[Picture]) -> str:
    inner = _img(pic, label) if pic else '<div class="none">no picture</div>'
    return (f'<a class="thumb" href="#{anchor}" style="border-color:{STATUS_COLOURS[status]}" '
            f'title="{escape(STATUS_WORDS[status])}">{inner}{escape(label)}</a>')


def summary_html(counts: str, thumbs: list, skipped: list) -> str:
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{STATUS_WORDS[k]}</span>'
                     for k, c in STATUS_COLOURS.items() if k != "scanned")
    skip = (f' <a href="#skipped">{len(skipped)} skipped file(s)</a>' if skipped else "")
    return (f'<section id="summary"><p>{escape(counts)}{skip}</p><p class="legend">{legend}</p>'
            f'<div class="thumbs">{"".join(thumbs)}</div></section>')


# --------------------------------------------------------------------------------------------
@dataclass
class QCPage:
    """What was written: the page, the conversion it shows, and the pictures of each volume."""

    path: str
    conversion: ConversionQC
    rendered: list                   # Rendered, one per volume of ``conversion.volumes``


def write_qc(outdir: str, kept: Optional[dict] = None) -> str:
    """Write ``OUTDIR/qc/index.html`` for the conversion in ``outdir``; return its path."""
    return render_conversion(outdir, kept).path


def render_conversion(outdir: str, kept: Optional[dict] = None) -> QCPage:
    """Write the QC page of ``outdir`` and return it with the data of every picture.

    ``kept`` maps a volume's file path to what convert --qc kept of it
    (:class:`~.render.Kept`); any other volume is read from its file.
    """
    kept = kept or {}
    qc = read_conversion(outdir)
    rendered = []
    with _staging(os.path.join(qc.outdir, "qc")) as (tmp, imgdir):
        thumbs, sections = [], []
        for k, vol in enumerate(qc.volumes, start=1):
            r = render_volume(vol, imgdir, f"v{k}", kept.get(os.path.abspath(vol.path)))
            rendered.append(r)
            thumbs.append(_thumb(r.anchor, vol.status, vol.label, r.thumb))
            sections.append(volume_html(vol, r))
        for k, ref in enumerate(qc.refused, start=1):
            thumbs.append(_thumb(f"r{k}", "refused", ref.group, None))
            sections.append(refused_html(f"r{k}", ref))
        sections.append(skipped_html(qc.skipped))
        _write_page(tmp, f"dicomrecon QC: {qc.input}", summary_html(_counts(qc), thumbs,
                                                                      qc.skipped), sections)
    return QCPage(os.path.join(qc.outdir, "qc", "index.html"), qc, rendered)


def _counts(qc: ConversionQC) -> str:
    by = {}
    for v in qc.volumes:
        by[v.status] = by.get(v.status, 0) + 1
    kinds = ", ".join(f"{n} {STATUS_WORDS[k]}" for k, n in by.items())
    return (f"{qc.files_read} file(s) read; {len(qc.volumes)} volume(s) written"
            + (f" ({kinds})" if kinds else "") + f"; {len(qc.refused)} group(s) refused.")


def _write_page(folder: str, title: str, summary: str, sections: list) -> None:
    html = PAGE.substitute(title=escape(title), summary=summary, sections="\n".join(sections))
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(html)


class _staging:
    """A fresh folder beside ``final`` (with img/ in it), renamed to ``final`` on success."""

    def __init__(self, final: str):
        self.final = os.path.abspath(final)

    def __enter__(self):
        parent = os.path.dirname(self.final)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=".qc-", dir=parent)
        os.mkdir(os.path.join(self.tmp, "img"))
        return self.tmp, os.path.join(self.tmp, "img")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        old = None
        if os.path.exists(self.final):
            old = self.final + f".old-{os.getpid()}"
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        os.chmod(self.final, 0o755)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return False


# --------------------------------------------------------------------------------------------
def write_scan_qc(result, folder: str, policy=None) -> str:
    """Slice-position plots of every stack a scan found, into ``folder/index.html``.

    Reads no pixels: the plots need only the headers' positions.
    """
    from ..plan import DEFAULT_POLICY, plan_group
    policy = policy or DEFAULT_POLICY
    with _staging(folder) as (tmp, imgdir):
        thumbs, sections = [], []
        for k, g in enumerate(result.groups, start=1):
            gp = plan_group(g, policy)
            anchor = f"g{k}"
            status = "refused" if gp.refused else "scanned"
            thumbs.append(_thumb(anchor, status, g.label, None))
            sections.append(_scan_group_html(g, gp, imgdir, anchor))
        sections.append(skipped_html([SkippedInfo(p, why) for p, why in result.skipped]))
        counts = (f"{result.n_files} file(s) read; {len(result.groups)} group(s), "
                  f"{sum(plan_group(g, policy).refused for g in result.groups)} refused under "
                  "this policy. Slice positions only: no pixels were decoded.")
        _write_page(tmp, f"dicomrecon scan QC: {result.root}",
                    summary_html(counts, thumbs, result.skipped), sections)
    return os.path.join(os.path.abspath(folder), "index.html")


def _scan_group_html(g, gp, imgdir: str, anchor: str) -> str:
    from .model import FindingText
    f = g.first
    text = [FindingText(x.code, x.severity, x.message)
            for x in g.findings + gp.refusals + [y for v in gp.volumes for y in v.findings]]
    out = [f'<section id="{anchor}"><h2>{escape(g.label)}: {escape(f.series_description)} '
           f'{_badge("refused" if gp.refused else "scanned")}</h2>',
           _kv([("series", f"{f.series_number} ({f.modality}, {f.manufacturer})"),
                ("series UID", g.series_uid), ("size", " x ".join(map(str, g.shape_xyz))),
                ("orientation", g.describe_orientation()), ("split keys", g.split_keys),
                ("convert would", ", ".join(f"{v.label}: {v.kind}" for v in gp.volumes)
                 or "refuse")]),
           _findings(list(dict.fromkeys(text)))]
    for n, sp in enumerate(_scan_positions(g, gp)):
        pic, _ = plot_positions(sp, imgdir, f"{anchor}_{n}")
        out.append(_img(pic, f"{sp.label} slice positions"))
    return "\n".join(out) + "</section>"


def _scan_positions(g, gp) -> list:
    """One :class:`StackPositions` per planned volume (parts know each other), or the
    group's own when it is refused."""
    vps = [v for v in gp.volumes if v.geometry is not None and len(v.geometry.positions)]
    if not vps:
        geom = g.geometry
        ok = geom is not None and geom.orientation is not None and len(geom.positions)
        return [positions_from_geometry(g.label, geom)] if ok else []
    return [positions_from_geometry(v.label, v.geometry, [(o.label, o.geometry.positions)
                                                          for o in vps if o is not v])
            for v in vps]
