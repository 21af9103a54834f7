"""A decoded volume's typed :class:`~dicomrecon.provenance.Provenance`, built from its plan.

The sidecar written beside every volume is ``provenance_of(...).to_json()``; ``Volume.provenance``
is the same record with no file yet (``volume.file == ""``).  Built once, when the volume is
decoded, it holds only plain data, so it serialises without the plan.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional

import numpy as np

from . import __version__
from .affines import decompose_affine, lps_to_ras
from .provenance import (DiffusionRecord, FourthAxis, GeometryRecord, OutputSlice, Provenance,
                         ResampleRecord, SourceRecord, SourceSlice, ValuesRecord, VolumeEntry,
                         VolumeRecord, frozen, load)

AXES = "x = column, y = row, z = slice (ascending along cross(row, column))"


def volume_record(array, affine, filename: str, fmt: str, rgb: bool) -> VolumeRecord:
    """The grid of ``array`` (nz, ny, nx[, 3]) under ``affine``, written as ``filename``."""
    origin, spacing, direction = decompose_affine(affine)
    return VolumeRecord(
        file=filename, format=fmt, shape_xyz=tuple(int(n) for n in array.shape[:3][::-1]),
        dtype=str(array.dtype), components=3 if rgb else 1, affine_lps=_rows(affine),
        affine_ras=_rows(lps_to_ras(affine)), origin_lps=tuple(origin.tolist()),
        spacing=tuple(spacing.tolist()), direction_lps=_rows(direction), axes=AXES)


def provenance_of(vol, root: Optional[str] = None, filename: str = "", fmt: str = "") -> Provenance:
    """The provenance of a volume decoded from a plan (``vol.metadata["plan"]``); source file
    names are relative to ``root`` (default: the folder of the first slice)."""
    vp, meta = vol.metadata["plan"], vol.metadata
    f = vp.slices[0]
    root = root if root is not None else os.path.dirname(os.path.abspath(f.path))
    slices, source_slices, resample = slice_records(vol, vp, _base(root))
    return Provenance(
        dicomrecon_version=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        volume=volume_record(vol.array, vol.affine, filename, fmt, vol.is_rgb),
        source=_source(vp, root), reconstruction=vp.kind, policy=frozen(meta["policy"]),
        slices=slices, source_slices=source_slices, resample=resample,
        geometry=load(GeometryRecord, vp.geometry.to_dict()) if vp.geometry else None,
        tags=frozen(_tags(vp)), values=load(ValuesRecord, meta["values"]),
        processing=tuple(meta["processing"]),
        findings=tuple(vp.group.findings) + tuple(vp.findings),
        diffusion=_diffusion(f))


def provenance_for_file(vol, root: str, filename: str, fmt: str) -> Provenance:
    """The sidecar of ``vol`` written as ``filename`` in a conversion of ``root``: the
    provenance :func:`~dicomrecon.conversion.load_plan` made, with the file's name and format,
    when its source paths are already relative to ``root`` (a flat folder); else built anew."""
    prov = vol.provenance
    if prov is None or prov.source is None or prov.source.input != os.path.abspath(root):
        return provenance_of(vol, root, filename, fmt)
    return dataclasses.replace(prov, volume=dataclasses.replace(prov.volume, file=filename,
                                                                format=fmt))


def provenance_4d(vols: list, array, root: str, filename: str, fmt: str, note: str,
                  fourth: dict) -> Provenance:
    """The first volume's provenance, plus the 4th axis and every volume's own sources."""
    first = provenance_of(vols[0], root, filename, fmt)
    plans = [v.metadata["plan"] for v in vols]
    vrec = dataclasses.replace(first.volume, shape_xyz=None, dtype=str(array.dtype),
                               shape_xyzt=tuple(int(n) for n in array.shape[::-1]))
    source = dataclasses.replace(first.source, group=tuple(p.label for p in plans),
                                 split_keys=frozen([p.group.split_keys for p in plans]))
    entries = []
    for t, (p, v) in enumerate(zip(plans, vols)):
        sl, src, res = slice_records(v, p, _base(root))
        entries.append(VolumeEntry(t=t, group=p.label, split_keys=frozen(p.group.split_keys),
                                   values=load(ValuesRecord, v.metadata["values"]), slices=sl,
                                   source_slices=src, resample=res))
    return dataclasses.replace(
        first, volume=vrec, source=source, slices=None, volumes=tuple(entries),
        fourth_axis=FourthAxis(**{**fourth, "values": frozen(fourth["values"])}), diffusion=None,
        processing=first.processing + (note,))


def slice_records(vol, vp, base: str):
    """(slices, source_slices, resample): which source image(s) each output slice came from."""
    src = tuple(SourceSlice(
        sop_instance_uid=h.sop_instance_uid, file=_relative(h.path, base),
        instance_number=h.instance_number, image_position_patient=_tuple(h.ipp),
        frame=h.frame + 1 if h.number_of_frames > 1 else None,
        tile=h.frame + 1 if h.tile is not None else None) for h in vp.slices)
    info = vol.metadata.get("resample")
    if info is None:  # stacked or sheared: output slice z is source slice z
        return tuple(dataclasses.replace(s, z=k) for k, s in enumerate(src)), None, None
    out = tuple(load(OutputSlice, s) for s in info["output_slices"])
    res = load(ResampleRecord, {k: v for k, v in info.items()
                                if k not in ("output_slices", "summary")})
    return out, src, res


def _source(vp, root: str) -> SourceRecord:
    f = vp.slices[0]
    return SourceRecord(
        input=os.path.abspath(root), series_instance_uid=f.series_instance_uid,
        series_number=f.series_number, series_description=f.series_description,
        modality=f.modality, manufacturer=f.manufacturer,
        study_instance_uid=f.study_instance_uid, frame_of_reference_uid=f.frame_of_reference_uid,
        group=vp.group.label, split_keys=frozen(vp.group.split_keys), part=vp.part)


def _tags(vp) -> dict:
    f = vp.slices[0]

    def uniq(attr):
        vals = sorted({getattr(h, attr) for h in vp.slices}, key=lambda v: (v is None, v))
        return vals[0] if len(vals) == 1 else vals

    return {
        "ImageOrientationPatient": _list(f.iop), "PixelSpacing": _list(f.pixel_spacing),
        "SliceThickness": uniq("slice_thickness"), "GantryDetectorTilt": uniq("gantry_tilt"),
        "RescaleSlope": uniq("rescale_slope"), "RescaleIntercept": uniq("rescale_intercept"),
        "RescaleType": f.rescale_type or None,
        "PhotometricInterpretation": f.photometric, "BitsAllocated": f.bits_allocated,
        "BitsStored": f.bits_stored, "PixelRepresentation": f.pixel_representation,
        "TransferSyntaxUID": uniq("transfer_syntax"),
    }


def _diffusion(first) -> Optional[DiffusionRecord]:
    """A diffusion-weighted (or trace) image's encoding (vendor.Diffusion), else None."""
    dif = first.extra.get("diffusion")
    if dif is None or not (dif.b > 0 or dif.trace):
        return None
    return load(DiffusionRecord, dif.to_dict())


def _base(root: str) -> str:
    """Folder that source file names in a sidecar are relative to."""
    return os.path.abspath(root) if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))


def _relative(path: str, base: str) -> str:
    """``os.path.relpath(path, base)`` for ``base`` from :func:`_base` (absolute, normalised);
    a path already absolute and normalised under ``base`` is cut, without relpath's two
    abspath calls (0.2 s of converting a 13,000-file archive)."""
    prefix = base.rstrip(os.sep) + os.sep
    if path.startswith(prefix) and "/." not in path and "//" not in path \
            and not path.endswith(os.sep):
        return path[len(prefix):]
    return os.path.relpath(path, base)


def _rows(m) -> tuple:
    return tuple(tuple(float(x) for x in row) for row in np.asarray(m))


def _tuple(v):
    return None if v is None else tuple(float(x) for x in v)


def _list(v):
    return None if v is None else list(v)
