"""The slice-position plot: where every source slice lies, the steps, and the tilt.

Three panels sharing one axis, the position along the slice normal (mm):

1. every source slice as a tick (the other parts of a split group in grey, split points dashed);
2. every step to the next slice, against the tolerance band around the median step, with
   duplicates, missing slices and irregular steps coloured and labelled;
3. the in-plane offset of each slice's origin (IPP) from the first one, along the row and the
   column direction: flat for a straight stack, a slope of tan(tilt) for a gantry-tilted one.

:func:`position_plot` returns the numbers it draws, so they can be checked against the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import StackPositions

COLOURS = {"regular": "#2a7", "duplicate": "#d22", "missing": "#e80", "irregular": "#a3c",
           "split": "#63c"}
MAX_LABELS = 8
#: figure size (inches) and resolution: 600 x 432 pixels
FIG_SIZE = (7.5, 5.4)
DPI = 80


@dataclass
class PositionPlot:
    """The plotted data, in the order drawn."""

    positions: np.ndarray        # (N,) slice positions along the normal (mm)
    steps: np.ndarray            # (N-1,) position[k+1] - position[k]
    kinds: list                  # (N-1,) regular, duplicate, missing, irregular
    missing: np.ndarray          # (N-1,) slices missing in each step (whole multiples)
    offsets: np.ndarray          # (N, 2) in-plane origin offset from slice 0 along row, col (mm)
    splits: list                 # positions (mm) where the group was split into parts
    band: tuple                  # (low, high) step tolerance band (mm)


def position_data(sp: StackPositions) -> PositionPlot:
    pos = np.asarray(sp.positions, float)
    steps = np.diff(pos)
    kinds, missing = [], np.zeros(steps.size, int)
    nominal = sp.nominal
    for k, step in enumerate(steps):
        ratio = step / nominal if nominal > 0 else 1.0
        whole = int(round(ratio))
        if step < sp.duplicate_mm:
            kinds.append("duplicate")
        elif abs(ratio - 1) <= sp.spacing_rel:
            kinds.append("regular")
        elif whole >= 2 and abs(ratio - whole) <= sp.spacing_rel * whole:
            kinds.append("missing")
            missing[k] = whole - 1
        else:
            kinds.append("irregular")
    rel = sp.ipps - sp.ipps[0] if len(sp.ipps) else np.zeros((0, 3))
    offsets = np.stack([rel @ sp.row, rel @ sp.col], axis=1) if len(rel) else np.zeros((0, 2))
    band = (nominal * (1 - sp.spacing_rel), nominal * (1 + sp.spacing_rel))
    return PositionPlot(pos, steps, kinds, missing, offsets, _splits(pos, sp.siblings), band)


def _splits(pos: np.ndarray, siblings: list) -> list:
    """Midpoints between successive parts of a split group (this one and its siblings)."""
    parts = [np.asarray(p, float) for p in [pos] + [o for _, o in siblings]]
    parts = sorted((p for p in parts if p.size), key=lambda p: float(p.min()))
    if len(parts) < 2:
        return []
    return [(float(a.max()) + float(b.min())) / 2 for a, b in zip(parts, parts[1:])]


def position_plot(sp: StackPositions, path) -> PositionPlot:
    """Draw the plot of ``sp`` into the PNG ``path`` (a file name or a binary file); return
    the data drawn."""
    from matplotlib.figure import Figure
    data = position_data(sp)
    fig = Figure(figsize=FIG_SIZE, dpi=DPI)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.09, hspace=0.3)
    ax_pos, ax_step, ax_tilt = fig.subplots(3, 1, sharex=True,
                                            gridspec_kw={"height_ratios": [1, 2.2, 1.6]})
    _draw_ticks(ax_pos, sp, data)
    _draw_steps(ax_step, sp, data)
    _draw_tilt(ax_tilt, sp, data)
    for ax in (ax_pos, ax_step, ax_tilt):  # few ticks: text is most of the drawing time
        ax.locator_params(axis="both", nbins=5)
        ax.tick_params(labelsize=7)
    ax_pos.tick_params(labelbottom=False)
    ax_step.tick_params(labelbottom=False)
    ax_tilt.set_xlabel("position along the slice normal cross(row, column) (mm)")
    fig.suptitle(f"{sp.label}: {len(data.positions)} source slice(s)", fontsize=10)
    fig.savefig(path, format="png")
    return data


def _draw_ticks(ax, sp: StackPositions, data: PositionPlot):
    for label, other in sp.siblings:
        ax.vlines(other, 0, 1, colors="#bbb", linewidth=1)
    ax.vlines(data.positions, 0, 1, colors="#236", linewidth=1, label="source slice")
    dup = [data.positions[k + 1] for k, kind in enumerate(data.kinds) if kind == "duplicate"]
    if dup:
        ax.plot(dup, [0.5] * len(dup), "x", color=COLOURS["duplicate"], label="duplicate")
    for x in data.splits:
        ax.axvline(x, color=COLOURS["split"], linestyle="--")
        ax.text(x, 1.05, "split", color=COLOURS["split"], ha="center", va="bottom", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(0, 1.4)
    ax.set_ylabel("slices", fontsize=8)
    if sp.siblings:
        ax.plot([], [], color="#bbb", label="other parts")
    ax.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)


def _draw_steps(ax, sp: StackPositions, data: PositionPlot):
    if not data.steps.size:
        ax.text(0.5, 0.5, "a single slice: no steps", transform=ax.transAxes, ha="center")
        return
    mid = (data.positions[:-1] + data.positions[1:]) / 2
    if np.isfinite(sp.nominal):
        ax.axhspan(*data.band, color="#2a7", alpha=0.18,
                   label=f"median {sp.nominal:.4g} mm \u00b1{sp.spacing_rel:.0%}")
        ax.axhline(sp.nominal, color="#2a7", linewidth=0.8)
    ax.plot(mid, data.steps, "-", color="#999", linewidth=0.6)
    for kind in ("regular", "duplicate", "missing", "irregular"):
        idx = [k for k, x in enumerate(data.kinds) if x == kind]
        if idx:
            ax.plot(mid[idx], data.steps[idx], "o", ms=3.5, color=COLOURS[kind],
                    label=f"{kind} ({len(idx)})")
    for k in _labelled_steps(data, sp.nominal):
        kind = data.kinds[k]
        text = (f"{data.missing[k]} missing" if kind == "missing" else
                "duplicate" if kind == "duplicate" else f"{data.steps[k]:.3g} mm")
        ax.annotate(text, (mid[k], data.steps[k]), xytext=(3, 4), textcoords="offset points",
                    fontsize=7, color=COLOURS[kind])
    for x in data.splits:
        ax.axvline(x, color=COLOURS["split"], linestyle="--")
    ax.set_ylabel("step to next (mm)", fontsize=8)
    ax.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
    top = float(np.nanmax(data.steps)) if data.steps.size else 1.0
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(data.steps))), top=top * 1.35 + 1e-6)


def _labelled_steps(data: PositionPlot, nominal: float) -> list:
    """Steps that get a text label: the first of each run of alike irregular steps, at most
    MAX_LABELS, so a long run of 7 mm steps is labelled once."""
    out, prev = [], None
    for k, kind in enumerate(data.kinds):
        if kind == "regular":
            prev = None
            continue
        alike = prev is not None and data.kinds[prev] == kind and \
            abs(data.steps[k] - data.steps[prev]) <= 0.05 * nominal
        if not alike and len(out) < MAX_LABELS:
            out.append(k)
        prev = k
    return out


def _draw_tilt(ax, sp: StackPositions, data: PositionPlot):
    if data.offsets.size:
        ax.plot(data.positions, data.offsets[:, 0], ".-", ms=3, label="along row (x)")
        ax.plot(data.positions, data.offsets[:, 1], ".-", ms=3, label="along column (y)")
    what = (f"gantry tilt {sp.tilt_deg:.3g} deg" if sp.tilt_deg else "no tilt: origins aligned")
    ax.set_title(f"in-plane offset of each slice origin from the first ({what})", fontsize=8)
    ax.set_ylabel("offset (mm)", fontsize=8)
    ax.legend(loc="upper right", fontsize=7, frameon=False)
