"""From scanned groups to volumes on disk: decode, place, write, and explain in a sidecar."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import __version__
from .decode import decode
from .discovery import Group, ScanResult, Series, scan
from .errors import OutputError, RefusedError
from .geometry import decompose_affine, lps_to_ras
from .volume import Volume
from .writers import extension, write_json, write_volume

#: Default output name: SeriesNumber, then SeriesDescription.  See README "Output names".
DEFAULT_NAME = "%n_%d"
NAME_TOKENS = {
    "%n": "SeriesNumber (0020,0011)",
    "%d": "SeriesDescription (0008,103E)",
    "%m": "Modality (0008,0060)",
    "%p": "ProtocolName (0018,1030)",
    "%i": "PatientID (0010,0020)",
    "%u": "SeriesInstanceUID (0020,000E)",
    "%g": "group index within the series (1, 2, ...)",
}
REPORT_NAME = "dicomrecon-report.json"


def load_group(group: Group, *, progress=None) -> Volume:
    """Decode a group into a :class:`Volume`, or raise :class:`RefusedError` with the reasons."""
    if group.refused:
        raise RefusedError(f"group {group.label}: " + "; ".join(f.message for f in group.reasons),
                           group.reasons)
    geom = group.geometry
    thickness = group.first.slice_thickness
    affine = geom.affine(single_slice_spacing=thickness if thickness and thickness > 0 else 1.0)
    array, plan, notes = decode(group.slices, progress=progress)
    processing = [f"sorted {len(group.slices)} slice(s) by position along the slice normal "
                  "cross(row, column); InstanceNumber and file names were not used"] + notes
    meta = {
        "group": group,
        "values": {**plan.to_dict(), "output_dtype": str(array.dtype),
                   "photometric_interpretation": group.first.photometric,
                   "units": "HU" if group.first.modality == "CT" and plan.mode != "none" or
                   group.first.rescale_type == "HU" else (group.first.rescale_type or None)},
        "processing": processing,
    }
    if group.first.photometric == "MONOCHROME1":
        processing.append("PhotometricInterpretation is MONOCHROME1 (low values display white); "
                          "values were NOT inverted")
    return Volume(array, affine, meta)


# --------------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return re.sub(r"_+", "_", text)[:80]


def output_stem(series: Series, group: Group, template: str = DEFAULT_NAME) -> str:
    f = group.first
    values = {
        "%n": "" if f.series_number is None else str(f.series_number),
        "%d": f.series_description, "%m": f.modality, "%p": f.extra.get("ProtocolName", ""),
        "%i": f.patient_id, "%u": f.series_instance_uid, "%g": str(group.index),
    }
    name = re.sub(r"%[a-z]", lambda m: values.get(m.group(0), m.group(0)), template)
    name = _clean(name) or "series"
    if len(series.groups) > 1 and "%g" not in template:
        name += f"_g{group.index}"
    return name


@dataclass
class Output:
    group: str
    path: str
    sidecar: str
    shape_xyz: tuple


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

    @property
    def skipped(self):
        return self.scan.skipped


def check_output_dir(outdir: str, inputs: str) -> str:
    outdir = os.path.abspath(outdir)
    src = os.path.realpath(inputs)
    real = os.path.realpath(outdir)
    if real == src or (os.path.isdir(src) and real.startswith(src.rstrip(os.sep) + os.sep)):
        raise OutputError(f"{outdir}: the output folder is inside the input folder {src}; "
                          "dicomrecon never writes into its input", hint="choose another -o")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise OutputError(f"{outdir}: exists and is not a folder")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output folder ({exc.strerror})")
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise OutputError(f"{outdir}: the output folder is not writable")
    return outdir


def convert(inputs: str, outdir: str, *, fmt: str = "nii.gz", series_uid: Optional[str] = None,
            name: str = DEFAULT_NAME, scan_result: Optional[ScanResult] = None,
            progress: Optional[Callable] = None) -> ConversionResult:
    """Convert every reconstructable group under ``inputs`` into ``outdir``.

    ``progress(stage, label, done, total)`` is called as work advances.  Groups that cannot be
    reconstructed correctly are listed in ``result.refused`` with their reasons; the others are
    still written.  A ``dicomrecon-report.json`` in ``outdir`` lists outputs, refusals and
    skipped files.
    """
    ext = extension(fmt)
    outdir = check_output_dir(outdir, inputs)
    if scan_result is None:
        scan_result = scan(inputs, series_uid=series_uid,
                           progress=(lambda d, t: progress("scan", "", d, t)) if progress else None)
    result = ConversionResult(scan_result)
    used: set = set()
    for series in scan_result.series:
        for group in series.groups:
            if group.refused:
                result.refused.append(Refusal(group.label, group.series_uid,
                                              [f.to_dict() for f in group.reasons]))
                continue
            stem = output_stem(series, group, name)
            base, k = stem, 2
            while stem in used:
                stem, k = f"{base}_{k}", k + 1
            used.add(stem)
            cb = (lambda d, t, lab=group.label: progress("decode", lab, d, t)) if progress else None
            vol = load_group(group, progress=cb)
            path = os.path.join(outdir, stem + ext)
            write_volume(path, vol.array, vol.affine, fmt,
                         description=f"dicomrecon {__version__} {group.label}")
            sidecar_path = os.path.join(outdir, stem + ".json")
            write_json(sidecar_path, sidecar(vol, scan_result.root, os.path.basename(path), fmt))
            result.outputs.append(Output(group.label, path, sidecar_path, group.shape_xyz))
            if progress:
                progress("write", group.label, 1, 1)
    write_json(os.path.join(outdir, REPORT_NAME), report(result))
    return result


def sidecar(vol: Volume, root: str, filename: str, fmt: str) -> dict:
    group: Group = vol.metadata["group"]
    f = group.first
    origin, spacing, direction = decompose_affine(vol.affine)
    base = os.path.abspath(root) if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))

    def uniq(attr):
        vals = sorted({getattr(h, attr) for h in group.slices}, key=lambda v: (v is None, v))
        return vals[0] if len(vals) == 1 else vals

    return {
        "dicomrecon_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "volume": {
            "file": filename, "format": fmt,
            "shape_xyz": list(vol.array.shape[::-1]), "dtype": str(vol.array.dtype),
            "affine_lps": vol.affine.tolist(), "affine_ras": lps_to_ras(vol.affine).tolist(),
            "origin_lps": origin.tolist(), "spacing": spacing.tolist(),
            "direction_lps": direction.tolist(),
            "axes": "x = column, y = row, z = slice (ascending along cross(row, column))",
        },
        "source": {
            "input": os.path.abspath(root),
            "series_instance_uid": f.series_instance_uid,
            "series_number": f.series_number,
            "series_description": f.series_description,
            "modality": f.modality, "manufacturer": f.manufacturer,
            "study_instance_uid": f.study_instance_uid,
            "frame_of_reference_uid": f.frame_of_reference_uid,
            "group": group.label, "split_keys": group.split_keys,
        },
        "slices": [{
            "z": k, "sop_instance_uid": h.sop_instance_uid,
            "file": os.path.relpath(h.path, base), "instance_number": h.instance_number,
            "image_position_patient": list(h.ipp),
        } for k, h in enumerate(group.slices)],
        "geometry": group.geometry.to_dict(),
        "tags": {
            "ImageOrientationPatient": list(f.iop), "PixelSpacing": list(f.pixel_spacing),
            "SliceThickness": uniq("slice_thickness"), "GantryDetectorTilt": uniq("gantry_tilt"),
            "RescaleSlope": uniq("rescale_slope"), "RescaleIntercept": uniq("rescale_intercept"),
            "RescaleType": f.rescale_type or None,
            "PhotometricInterpretation": f.photometric, "BitsAllocated": f.bits_allocated,
            "BitsStored": f.bits_stored, "PixelRepresentation": f.pixel_representation,
            "TransferSyntaxUID": uniq("transfer_syntax"),
        },
        "values": vol.metadata["values"],
        "processing": vol.metadata["processing"],
        "findings": [x.to_dict() for x in group.findings],
    }


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
    }


__all__ = ["convert", "load_group", "ConversionResult", "NAME_TOKENS", "DEFAULT_NAME"]
