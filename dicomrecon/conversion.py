"""From scanned groups to volumes on disk: decode, place, write, and explain in a sidecar."""

from __future__ import annotations

import os
import time

import numpy as np
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from . import __version__
from .decode import DecodeError, check_finite, decode
from .discovery import Group, ScanResult, Series, scan
from .errors import AmbiguousInputError, ExitCode, GridError, OutputError, RefusedError, shown
from .plan import DEFAULT_POLICY, Policy, VolumePlan, plan_group, stack_affine
from .resample import _is_explicit, resample, target_grid, uncovered_mm
from . import geometry as geo
from .fourth_axis import fourth_axis_keys, merge_sets, time_axis_tr
from .naming import DEFAULT_NAME, NAME_TOKENS, UniqueNames, output_stem
from .geometry import ERROR, WARNING, Finding
from .provenance import DiffusionTable, Provenance, frozen, load
from .recording import provenance_4d, provenance_for_file, provenance_of
from .volume import Volume
from .writers import extension, is_inside, make_writable_folder, write_json, write_volume

REPORT_NAME = "dicomrecon-report.json"


def load_group(group: Group, *, policy: Policy = DEFAULT_POLICY, progress=None) -> Volume:
    """Decode a group into one :class:`Volume`.

    Raises :class:`RefusedError` (with ``.findings``) when the group cannot be reconstructed
    correctly under ``policy``, and :class:`AmbiguousInputError` when the policy makes it
    several volumes (use :func:`plan_group` and :func:`load_plan`).
    """
    gp = plan_group(group, policy)
    if gp.refused:
        raise RefusedError(f"group {group.label}: " + "; ".join(f.message for f in gp.refusals),
                           gp.refusals)
    if len(gp.volumes) > 1:
        raise AmbiguousInputError(
            f"group {group.label} becomes {len(gp.volumes)} volumes under this policy: "
            + "; ".join(f.message for f in gp.volumes[0].findings),
            hint="use dicomrecon.read_volumes(), or plan_group() and load_plan()")
    return load_plan(gp.volumes[0], policy=policy, progress=progress)


def load_plan(vp: VolumePlan, *, policy: Policy = DEFAULT_POLICY, progress=None,
              on_decoded: Optional[Callable] = None) -> Volume:
    """Decode, and resample when planned, one :class:`VolumePlan` into a :class:`Volume`.
    ``on_decoded(vp, array)`` sees the decoded slices before any resampling (of the first
    plan only in :func:`load_4d`)."""
    geom, first = vp.geometry, vp.slices[0]
    array, plan, notes = decode(vp.slices, engine=policy.engine, preloaded=vp.group.pixels,
                                progress=_stage(progress, "decode", vp.label))
    if on_decoded:
        on_decoded(vp, array)
    processing = ([f"sorted {len(vp.slices)} slice(s) by position along the slice normal "
                   "cross(row, column); InstanceNumber and file names were not used"]
                  if geom is not None else []) + notes
    meta = {
        "plan": vp,
        "rgb": first.samples_per_pixel == 3,
        "policy": policy.to_dict(),
        "values": {**plan.to_dict(), "output_dtype": str(array.dtype),
                   "photometric_interpretation": first.photometric,
                   "units": "HU" if first.modality == "CT" and plan.mode != "none" or
                   first.rescale_type == "HU" else (first.rescale_type or None)},
        "processing": processing,
    }
    if first.photometric == "MONOCHROME1":
        processing.append("PhotometricInterpretation is MONOCHROME1 (low values display white); "
                          "values were NOT inverted")
    if vp.kind == "placeholder":
        affine = placeholder_affine(first)
        processing.append("NO GEOMETRY: (0020,0032)/(0020,0037) missing; written because "
                          "--no-geometry was given, with a placeholder affine that is not patient "
                          "space; slices in InstanceNumber order")
    elif vp.kind == "stack":
        affine = stack_affine(vp)
        processing.append("stacked as acquired: the slices form a regular orthogonal grid")
    elif vp.kind == "sheared":
        affine = sheared_affine(geom)
        processing.append(f"kept the gantry tilt ({geom.tilt_deg:.3g} deg) as an exact sheared "
                          "grid (NIfTI sform / NRRD space directions); no resampling")
    else:
        array, affine, info = _resample(vp, array, policy, progress)
        meta["resample"] = info
        meta["values"]["output_dtype"] = str(array.dtype)
        processing.append(info["summary"])
    check_finite(array, vp.slices)  # the last guard: no NaN or Inf voxel is ever written
    check_affine(affine, vp)
    vol = Volume(array, affine, meta)
    vol.provenance = provenance_of(vol)  # plain data from here on: serialises without the plan
    return vol


#: Largest |value| in an affine that every writer can store (NIfTI's are float32).
AFFINE_LIMIT = 1e30


def check_affine(affine: np.ndarray, vp: VolumePlan) -> None:
    """Refuse a grid whose position or spacing no format can store (e.g. a SliceThickness of
    1e300 on a single slice, an ImagePositionPatient of 1e308)."""
    if np.all(np.isfinite(affine)) and np.abs(affine).max() < AFFINE_LIMIT:
        return
    f = vp.slices[0]
    raise DecodeError(
        f"{f.path}: the output grid is out of range (affine {np.array2string(affine[:3], precision=4)}"
        f"), from (0020,0032) 'Image Position (Patient)' {shown(f.ipp)}, (0028,0030) 'Pixel "
        f"Spacing' {shown(f.pixel_spacing)} or (0018,0050) 'Slice Thickness' "
        f"{shown(f.slice_thickness)}; every "
        f"value must be finite and below {AFFINE_LIMIT:g}", tag="(0020,0032)",
        code="GEOMETRY_OUT_OF_RANGE")


def placeholder_affine(first):
    """Identity orientation, origin 0, PixelSpacing (or 1 mm) and SliceThickness (or 1 mm)."""
    return geo.placeholder_affine(first.pixel_spacing, first.slice_thickness)


def sheared_affine(geom):
    """The exact sheared grid of a regular tilted stack: z column = IPP step."""
    return geo.sheared_affine(geom.orientation, geom.pixel_spacing, geom.ipp_sorted)


def _resample(vp: VolumePlan, array, policy: Policy, progress):
    geom, first = vp.geometry, vp.slices[0]
    grid = target_grid(geom.orientation, geom.pixel_spacing, geom.ipp_sorted,
                       (first.rows, first.columns), spacing=policy.spacing)
    if first.pixel_padding_value is not None:
        fill = first.pixel_padding_value * first.rescale_slope + first.rescale_intercept
        fill_source = "PixelPaddingValue (0028,0120), rescaled"
    else:
        fill = float(array.min()) if array.size else 0.0
        fill_source = "minimum of the data (no PixelPaddingValue)"
    cb = _stage(progress, "resample", vp.label)
    if array.ndim == 4:  # RGB: each channel on its own, black outside
        chans = [resample(array[..., c], grid, method=policy.interpolation, fill=0, progress=cb)
                 for c in range(array.shape[-1])]
        res = chans[0]
        res.array = np.stack([c.array for c in chans], axis=-1)
        fill_source = "black (colour image)"
    else:
        res = resample(array, grid, method=policy.interpolation, fill=fill, progress=cb)
    steps = np.diff(geom.positions)
    beyond = uncovered_mm(grid)
    if beyond > policy.tolerances.uncovered_mm:
        vp.findings.append(Finding(
            "SLAB_NOT_COVERED", WARNING,
            f"the explicit slice spacing {policy.spacing} mm does not divide the acquired slab: "
            f"the last {beyond:.4g} mm of it lies beyond the last output plane (use --spacing "
            "median or min to span it exactly)", value=beyond))
    tilt = vp.group.geometry  # the tilt is the whole stack's, also for a part of it
    why = []
    if tilt.is_tilted:
        why.append(f"gantry tilt {tilt.tilt_deg:.3g} deg")
    if not geom.spacing.regular:
        why.append("irregular spacing")
    dz = float(np.linalg.norm(grid.affine[:3, 2]))
    info = {
        "summary": (f"resampled ({', '.join(why) or 'as planned'}) onto an orthogonal grid along "
                    f"the true slice normal: {policy.interpolation} interpolation, slice spacing "
                    f"{dz:.4g} mm ({policy.spacing}); {res.fill_voxels} voxel(s) outside the "
                    f"acquired slices set to {res.fill_value:g} ({fill_source})"),
        "interpolation": policy.interpolation,
        "tilt_deg_from_positions": tilt.tilt_deg if tilt.is_tilted else 0.0,
        "tilt_deg_from_tag": tilt.tilt_tag_deg,
        "spacing_before_mm": {"min": float(steps.min()) if steps.size else None,
                              "median": geo.median(steps) if steps.size else None,
                              "max": float(steps.max()) if steps.size else None},
        "spacing_after_mm": dz,
        "grid": grid.to_dict(),
        "fill": {"value": res.fill_value, "source": fill_source, "voxels": res.fill_voxels,
                 "fraction": res.fill_voxels / max(1, int(np.prod(grid.shape_zyx)))},
        "source_slice_offsets_px": grid.src_offsets.tolist(),
        "output_slices": [{"z": k, "position_mm": float(grid.z_positions[k]),
                           "sources": [{"sop_instance_uid": vp.slices[i].sop_instance_uid,
                                        "weight": round(w, 6)} for i, w in src]}
                          for k, src in enumerate(res.sources)],
    }
    return res.array, grid.affine, info


# --------------------------------------------------------------------------------------------
@dataclass
class Output:
    group: str
    path: str
    sidecar: str
    shape_xyz: tuple
    damaged: list = field(default_factory=list)  # [(path, reason)] lost from this volume
    notes: list = field(default_factory=list)    # what a reader of the file must know (console)
    sha256: Optional[str] = None          # of the volume file, with convert(checksums=True)
    sidecar_sha256: Optional[str] = None  # of the sidecar, likewise


@dataclass
class Refusal:
    group: str
    series_uid: str
    reasons: list


@dataclass
class ConversionResult:
    scan: ScanResult
    outputs: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    error: Optional[str] = None      # set when the run stopped on an error (report still written)

    @property
    def skipped(self):
        return self.scan.skipped

    @property
    def damaged_files(self) -> list:
        """[(path, reason)] of damaged files that a written volume lost (README "Damaged
        slices"): these make the run partial."""
        return list(dict.fromkeys(d for o in self.outputs for d in o.damaged))

    @property
    def exit_code(self) -> ExitCode:
        """README "Exit codes": 3 nothing found, 4 partial, 5 nothing written, else 0."""
        if not self.outputs and not self.refused:
            return ExitCode.NO_DICOM
        if self.refused or self.damaged_files:
            return ExitCode.PARTIAL if self.outputs else ExitCode.NOTHING_CONVERTED
        return ExitCode.OK


def check_output_dir(outdir: str, inputs: str) -> str:
    outdir = os.path.abspath(outdir)
    src = os.path.realpath(inputs)
    if is_inside(outdir, src):
        raise OutputError(f"{outdir}: the output folder is inside the input folder {src}; "
                          "dicomrecon never writes into its input", hint="choose another -o")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(f"{outdir}: exists and is not a folder")
    make_writable_folder(outdir)
    from .writers import remove_stale_temporaries  # left by a killed run: one stderr line each
    remove_stale_temporaries(outdir)
    return outdir


@dataclass
class _Job:
    """What convert writes, decided before any pixel is decoded."""

    series: Series
    sets: list        # [[VolumePlan, ...]] written as one 4D volume each
    singles: list     # [VolumePlan] written alone
    alone: bool       # the series' only output (no group suffix)


def convert(inputs: str, outdir: str, *, fmt: str = "nii.gz", series_uid: Optional[str] = None,
            name: str = DEFAULT_NAME, policy: Policy = DEFAULT_POLICY,
            scan_result: Optional[ScanResult] = None,
            progress: Optional[Callable] = None,
            on_output: Optional[Callable] = None,
            bids: bool = False, source: Optional[dict] = None,
            on_decoded: Optional[Callable] = None, checksums: bool = False) -> ConversionResult:
    """Convert every reconstructable group under ``inputs`` into ``outdir``.

    ``progress(stage, label, done, total)`` is called as work advances; ``on_output(output,
    array)`` after each volume is written, with the array written (``convert --qc`` keeps
    its mid-planes instead of reading the file back); ``on_decoded(plan, array)`` with each
    plan's decoded slices before any resampling (convert --qc keeps the naive stack's plane
    for its before/after picture instead of decoding them again).  Groups that cannot be
    reconstructed correctly, or whose pixels cannot be decoded, are listed in
    ``result.refused`` with their reasons; the others are still written.  A
    ``dicomrecon-report.json`` in ``outdir`` lists outputs, refusals and skipped files; it is
    written however the run ends.
    ``result.exit_code`` is the CLI's exit code.  With ``bids``, each sidecar has BIDS keys at
    the top level and dicomrecon's own record under ``"dicomrecon"`` (dicomrecon.bids.sidecar).
    ``source`` (e.g. a PACS URL and UIDs, never credentials) replaces the local folder as
    ``source.input`` in the sidecars and report, kept whole in ``source.pacs``.  With
    ``checksums``, each output's ``sha256`` and ``sidecar_sha256`` are hashed from the bytes
    as they are written (the volume's stays None for nii.gz).
    """
    ext = extension(fmt)
    outdir = check_output_dir(outdir, inputs)
    if scan_result is None:
        scan_result = scan(inputs, series_uid=series_uid, progress=_stage(progress, "scan", ""),
                           engine=policy.engine,
                           tol=policy.tolerances)
    if policy.merge_4d and fmt not in ("nii", "nii.gz"):
        raise ValueError(f"--4d writes NIfTI (nii, nii.gz), not {fmt}: ITK cannot read a "
                         "spatial NRRD or MHA with a time axis")
    result = ConversionResult(scan_result)
    try:
        jobs = [_plan_series(series, policy, fmt, result) for series in scan_result.series]
        names = UniqueNames()
        ctx = _Context(outdir, ext, fmt, policy, scan_result.root, progress, bids, on_output,
                       source, on_decoded, checksums)
        for job in jobs:
            for vps in job.sets:
                stem = names.take(output_stem(job.series, vps[0].group, name,
                                              group_suffix=not job.alone) + "_4D")
                _guarded(result, vps, lambda: _write_4d(vps, stem, ctx))
            for vp in job.singles:
                stem = names.take(output_stem(job.series, vp.group, name)
                                  + (f"_p{vp.part}" if vp.part else ""))
                _guarded(result, [vp], lambda: _write_one(vp, stem, ctx))
    except BaseException as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        write_json(os.path.join(outdir, REPORT_NAME), _report_with_source(report(result), source))
    return result


def _plan_series(series: Series, policy: Policy, fmt: str, result: ConversionResult) -> _Job:
    """Plan every group of a series; refusals go into ``result``; grids are checked here."""
    todo = []
    for group in series.groups:
        gp = plan_group(group, policy)
        if gp.refused:
            _check_grid_option(gp.refusals, policy)
            result.refused.append(Refusal(group.label, group.series_uid,
                                          [f.to_dict() for f in gp.refusals]))
            continue
        for vp in gp.volumes:
            problem = _format_problem(vp, fmt, policy)
            if problem is not None:
                result.refused.append(Refusal(vp.label, group.series_uid, [problem.to_dict()]))
                continue
            todo.append(vp)
    sets = merge_sets(todo) if policy.merge_4d else []
    merged = {id(vp) for group_set in sets for vp in group_set}
    alone = len(sets) + len(todo) - len(merged) == 1  # the series' only output
    return _Job(series, sets, [vp for vp in todo if id(vp) not in merged], alone)


#: Largest length of one axis per output format (NIfTI-1 dim[] is a signed 16-bit integer).
FORMAT_MAX_AXIS = {"nii": 32767, "nii.gz": 32767}


def _format_problem(vp: VolumePlan, fmt: str, policy: Policy) -> Optional[Finding]:
    """A volume the format cannot hold: tilt kept as a shear in MetaImage, or an axis longer
    than the format allows.  Raises :class:`GridError` when --spacing asked for it."""
    if vp.kind == "sheared" and fmt == "mha":
        return Finding(
            "REFUSED_SHEARED_FORMAT", ERROR,
            f"--tilt preserve keeps a sheared grid ({vp.geometry.tilt_deg:.3g} deg), "
            "which MetaImage (.mha) cannot hold; write nii, nii.gz or nrrd, or use "
            "--tilt resample")
    limit = FORMAT_MAX_AXIS.get(fmt)
    if limit is None or max(vp.shape_xyz) <= limit:
        return None
    what = (f"an output grid of {'x'.join(map(str, vp.shape_xyz))} for {vp.label}, but a "
            f"NIfTI-1 file holds at most {limit} along one axis")
    if vp.kind == "resample" and _is_explicit(policy.spacing):
        raise GridError(f"--spacing {policy.spacing}: {what}", hint="choose a larger "
                        "--spacing, or -f nrrd / -f mha")
    return Finding("FORMAT_LIMIT", ERROR, f"{what}: refused (write -f nrrd or -f mha)",
                   value=list(vp.shape_xyz), tolerance=limit)


def _check_grid_option(refusals: list, policy: Policy) -> None:
    """A grid over --max-voxels that --spacing asked for is a usage error (exit 2)."""
    for f in refusals:
        if f.code == "GRID_TOO_LARGE" and _is_explicit(policy.spacing) \
                and f.message.startswith("--spacing"):
            raise GridError(f.message)


def _guarded(result: ConversionResult, vps: list, work: Callable) -> None:
    """The per-volume error boundary: pixels that cannot be decoded (or give non-finite
    values) refuse this volume, with the file, tag and reason; the run goes on."""
    try:
        result.outputs.append(work())
    except DecodeError as exc:
        result.refused.append(Refusal("+".join(vp.label for vp in vps), vps[0].group.series_uid,
                                      [f.to_dict() for f in exc.findings]))


@dataclass(frozen=True)
class _Context:
    """What every volume of one convert() call is written with."""

    outdir: str
    ext: str
    fmt: str
    policy: Policy
    root: str
    progress: Optional[Callable]
    bids: bool
    on_output: Optional[Callable]
    source: Optional[dict] = None     # a remote source (URL, UIDs) recorded instead of root
    on_decoded: Optional[Callable] = None
    checksums: bool = False           # hash each file as it is written (Output.sha256)

    def finish(self, output: "Output", array) -> "Output":
        if self.on_output:
            self.on_output(output, array)
        return output


def load_4d(vps: list, *, policy: Policy = DEFAULT_POLICY, progress=None,
            root: Optional[str] = None, on_decoded: Optional[Callable] = None) -> Volume:
    """Decode the volume plans of one --4d set (:func:`merge_sets`, ordered along the 4th
    axis) into one 4D :class:`Volume`: array (nt, nz, ny, nx) on the first volume's affine, the
    4th axis (key and values) in ``provenance.fourth_axis`` and every volume's sources in
    ``provenance.volumes``; source file names relative to ``root`` (default: the folder of the
    first slice)."""
    vols = [load_plan(vp, policy=policy, progress=progress,  # the page shows the first's
                      on_decoded=on_decoded if k == 0 else None) for k, vp in enumerate(vps)]
    array = np.stack([v.array for v in vols]).astype(
        np.result_type(*[v.array.dtype for v in vols]), copy=False)
    root = root if root is not None else os.path.dirname(os.path.abspath(vps[0].slices[0].path))
    prov = provenance_4d_of(vols, array, root, "", "")
    meta = {"plans": list(vps), "policy": policy.to_dict(),
            "values": [v.metadata["values"] for v in vols],
            "processing": list(prov.processing)}
    return Volume(array, vols[0].affine, meta, prov)


def _write_4d(vps, stem, ctx: _Context) -> Output:
    vol = load_4d(vps, policy=ctx.policy, progress=ctx.progress, root=ctx.root,
                  on_decoded=ctx.on_decoded)
    array = vol.array
    path = os.path.join(ctx.outdir, stem + ctx.ext)
    label = "+".join(vp.label for vp in vps)
    tr = time_axis_tr(vps)
    digest = write_volume(path, array, vol.affine, ctx.fmt,
                          description=f"dicomrecon {__version__} {label}",
                          progress=_stage(ctx.progress, "write", label), tr=tr,
                          digest=ctx.checksums)
    prov = replace(vol.provenance, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   volume=replace(vol.provenance.volume, file=os.path.basename(path),
                                  format=ctx.fmt))
    prov = _with_source(prov, ctx.source)
    prov = _diffusion_4d(prov, os.path.join(ctx.outdir, stem), vps, vol.affine, tr)
    sidecar_path = os.path.join(ctx.outdir, stem + ".json")
    side = prov.to_json()
    if ctx.bids:
        side = _with_bids(side, vps, vol.affine)
    side_digest = write_json(sidecar_path, side, digest=ctx.checksums)
    return ctx.finish(Output(label, path, sidecar_path, tuple(array.shape[::-1]),
                             [d for vp in vps for d in vp.group.damaged],
                             sha256=digest, sidecar_sha256=side_digest), array)


def _write_one(vp, stem, ctx: _Context) -> Output:
    vol = load_plan(vp, policy=ctx.policy, progress=ctx.progress, on_decoded=ctx.on_decoded)
    path = os.path.join(ctx.outdir, stem + ctx.ext)
    digest = write_volume(path, vol.array, vol.affine, ctx.fmt, rgb=vol.is_rgb,
                          description=f"dicomrecon {__version__} {vp.label}",
                          progress=_stage(ctx.progress, "write", vp.label), digest=ctx.checksums)
    sidecar_path = os.path.join(ctx.outdir, stem + ".json")
    side = _with_source(provenance_for_file(vol, ctx.root, os.path.basename(path), ctx.fmt),
                        ctx.source).to_json()
    if ctx.bids:
        side = _with_bids(side, [vp], vol.affine)
    side_digest = write_json(sidecar_path, side, digest=ctx.checksums)
    notes = [f.message for f in vp.findings if f.code == "SHEARED_GRID"]
    return ctx.finish(Output(vp.label, path, sidecar_path, tuple(vol.array.shape[:3][::-1]),
                             list(vp.group.damaged), notes, digest, side_digest), vol.array)


def _diffusion_4d(prov: Provenance, stem: str, vps: list, affine, tr) -> Provenance:
    """.bval/.bvec beside a 4D diffusion volume, recorded in its provenance (dicomrecon.bids);
    the time axis of a 4D time series."""
    from .bids.diffusion import write_diffusion
    rec = write_diffusion(stem, vps, affine)
    if rec is not None:
        prov = replace(prov, diffusion=load(DiffusionTable, rec))
    if tr is not None:
        prov = replace(prov, fourth_axis=replace(
            prov.fourth_axis, repetition_time_s=tr,
            note=f"the 4th axis is time: NIfTI pixdim[4] = RepetitionTime (0018,0080) = {tr:g} "
                 "s, xyzt_units = mm + s"))
    return prov


def _with_bids(side: dict, plans: list, affine) -> dict:
    """BIDS keys at the top level, dicomrecon's sidecar under "dicomrecon"."""
    from .bids.sidecar import bids_keys
    return {**bids_keys(plans, affine), "dicomrecon": side}


def _report_with_source(doc: dict, source: Optional[dict]) -> dict:
    """The report records a remote source (URL and UIDs) instead of the local cache folder."""
    if source:
        doc["input"] = source.get("url")
        doc["pacs"] = source
    return doc


def _with_source(prov: Provenance, source: Optional[dict]) -> Provenance:
    """A provenance whose source is a remote one (URL and UIDs), not the local cache folder."""
    if not source:
        return prov
    return replace(prov, source=replace(prov.source, input=source.get("url"),
                                        pacs=frozen(source)))


def _stage(progress, stage: str, label: str):
    """``progress(stage, label, done, total)`` as a ``(done, total)`` callback, or None."""
    return (lambda done, total: progress(stage, label, done, total)) if progress else None


def sidecar(vol: Volume, root: str, filename: str, fmt: str) -> dict:
    """The sidecar document of a decoded volume: its Provenance's JSON, with source file names
    relative to ``root``."""
    return provenance_of(vol, root, filename, fmt).to_json()


def provenance_4d_of(vols: list, array, root: str, filename: str, fmt: str) -> Provenance:
    """The provenance of a --4d volume: the first volume's, plus the 4th axis and every
    volume's own sources."""
    plans = [v.metadata["plan"] for v in vols]
    keys = fourth_axis_keys(plans)
    key = keys[0] if len(keys) == 1 else tuple(keys)
    fourth = {"key": key,
              "values": tuple(p.group.split_keys.get(key) if len(keys) == 1 else
                              {k: p.group.split_keys.get(k) for k in keys} for p in plans),
              "note": "NIfTI pixdim[4] is 1: the 4th axis is indexed by these values; diffusion "
                      "gradient directions are DICOM's, in patient (LPS) coordinates"}
    return provenance_4d(vols, array, root, filename, fmt,
                         f"--4d: {len(vols)} volumes on one grid stacked along a 4th axis by "
                         f"{list(key) if isinstance(key, tuple) else key}", fourth)


def report(result: ConversionResult) -> dict:
    return {
        "dicomrecon_version": __version__,
        "input": os.path.abspath(result.scan.root),
        "files_read": result.scan.n_files,
        "outputs": [{"group": o.group, "file": os.path.basename(o.path),
                     "sidecar": os.path.basename(o.sidecar), "shape_xyz": list(o.shape_xyz)}
                    for o in result.outputs],
        "refused": [{"group": r.group, "series_instance_uid": r.series_uid, "reasons": r.reasons}
                    for r in result.refused],
        "skipped_files": [{"file": p, "reason": why} for p, why in result.scan.skipped],
        "damaged_files": [{"file": p, "reason": why} for p, why in result.damaged_files],
        "exit_code": int(result.exit_code) if result.error is None else None,
        "error": result.error,
    }


__all__ = ["convert", "load_group", "load_plan", "load_4d", "ConversionResult", "NAME_TOKENS", "DEFAULT_NAME"]
