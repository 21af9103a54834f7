"""The reference of an export - a DICOM folder, a conversion's sidecar, or the source of a
Volume read by dicomrecon - and the identity (patient, study, frame of reference) and per-slice
source instances it supplies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..affines import SliceGeometry
from ..errors import InputError, RefusedError
from ..geometry import DEFAULT_TOLERANCES
from ..geometry import match_planes as match_plane_indices
from ..provenance import read_provenance
from ..volume import Volume
from .common import new_uid


#: Affines of a volume and its sidecar agree within this many mm (NIfTI stores the sform in
#: float32).  The shear tolerance is affines.ORTHO_TOL.
SAME_GRID_MM = DEFAULT_TOLERANCES.same_grid_mm

PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                    "PatientSex")
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                  "ReferringPhysicianName", "StudyDescription")
SERIES_COPY_KEYWORDS = ("PatientPosition", "BodyPartExamined", "Laterality")
CT_COPY_KEYWORDS = ("KVP",)
MR_COPY_KEYWORDS = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
                    "SequenceName", "RepetitionTime", "EchoTime", "EchoTrainLength",
                    "InversionTime", "NumberOfAverages", "ImagingFrequency", "ImagedNucleus",
                    "MagneticFieldStrength", "FlipAngle")
#: MR Image module Type 2 / 2C attributes written empty when the reference lacks them
#: (InversionTime only when ScanningSequence includes IR, as its condition says).
MR_TYPE2 = ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength")
#: ImageType value 3: CT requires AXIAL or LOCALIZER (AXIAL = any cross-section); MR requires a
#: value (defined term OTHER); Secondary Capture has no value 3.

@dataclass
class Reference:
    """The identity to keep and the sources to cite, from a DICOM folder, sidecar or plan."""

    kind: str                        # "sidecar", "dicom" or "source of the volume"
    path: str
    first_file: str                  # a DICOM file of the source series (identity is read here)
    modality: str
    source_series_uid: Optional[str] = None
    source_study_uid: Optional[str] = None
    source_series_number: Optional[int] = None
    source_series_description: str = ""
    # Grid of the referenced volume and, per slice of it, the source instances
    grid_affine: Optional[np.ndarray] = None
    grid_shape_xyz: Optional[tuple] = None
    slice_sources: Optional[list] = None      # per z: [sop_instance_uid, ...]
    spatially_preserved: Optional[bool] = None
    sop_classes: dict = field(default_factory=dict)   # sop_instance_uid -> sop_class_uid
    planes: Optional[list] = None            # DICOM folder: [(iop, ipp, ps, rows, cols, uid)]
    slice_thickness: Optional[float] = None
    reconstruction: str = ""
    frames: list = field(default_factory=list)  # DICOM folder: its FrameOfReferenceUIDs
    matched: bool = False                        # DICOM folder: an image on every written plane


def _read_dicom(path: str):
    import pydicom
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the reference DICOM file "
                         f"({type(exc).__name__}: {exc})")


def is_sidecar(path: str) -> bool:
    """True when ``path`` is a JSON sidecar written by dicomrecon convert (plain or --bids)."""
    try:
        read_provenance(path)
    except InputError:
        return False
    return True


def reference_from_sidecar(path: str) -> Reference:
    """The reference a conversion's sidecar describes, checked against its source files."""
    prov = read_provenance(path)
    src, vol = prov.source, prov.volume
    if prov.reconstruction == "placeholder":
        raise RefusedError(f"{path}: the converted volume has no patient geometry (written with "
                           "--no-geometry); it cannot be a reference")
    root = src.input or ""
    base = root if os.path.isdir(root) else os.path.dirname(root)
    listed = prov.source_slices or prov.slices or ()
    files = {s.sop_instance_uid: os.path.join(base, s.file) for s in listed
             if getattr(s, "file", None) and s.sop_instance_uid}
    if not files:
        raise InputError(f"{path}: the sidecar lists no source files", hint="pass --like with "
                         "the source DICOM folder instead")
    missing = [p for p in files.values() if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{path}: {len(missing)} of its {len(files)} source DICOM file(s) are not "
                         f"readable, e.g. {missing[0]} (the sidecar's source.input is {root!r})",
                         hint="pass --like with the source DICOM folder, or --standalone")
    classes = _source_classes(path, files)
    if prov.reconstruction == "resample":
        per_slice = [[s.sop_instance_uid for s in sl.sources if s.weight > 0]
                     for sl in prov.slices or ()]
        preserved = False
    else:
        per_slice = [[sl.sop_instance_uid] for sl in prov.slices or ()]
        preserved = True
    thick = (prov.tags or {}).get("SliceThickness")
    return Reference(
        "sidecar", os.path.abspath(path), next(iter(files.values())), src.modality or "",
        src.series_instance_uid, src.study_instance_uid, src.series_number,
        src.series_description or "", vol.affine, tuple(vol.shape_xyz or ()), per_slice,
        preserved, classes,
        slice_thickness=float(thick) if isinstance(thick, (int, float)) and thick > 0 else None,
        reconstruction=prov.reconstruction)


def _source_classes(path: str, files: dict) -> dict:
    """SOPClassUID of every source file, checking that each still has the listed
    SOPInstanceUID."""
    from ..engine.gdcm_headers import read_uids
    classes = {}
    found = read_uids(list(files.values()))  # one GDCM pass over the sources
    for uid, p in files.items():
        sop, sop_class = found.get(p, ("", ""))
        if sop != uid:
            raise InputError(f"{p}: its (0008,0018) 'SOP Instance UID' is "
                             f"'{sop}', the sidecar {path} says '{uid}': "
                             "the source changed since the conversion")
        classes[uid] = sop_class
    return classes


def reference_from_volume(vol: Volume) -> Optional[Reference]:
    """The source of a Volume decoded by dicomrecon (its ``metadata['plan']``), if any."""
    vp = vol.metadata.get("plan") if isinstance(vol.metadata, dict) else None
    if vp is None or not getattr(vp, "slices", None):
        return None
    if getattr(vp, "kind", "") == "placeholder":
        raise RefusedError("the volume has no patient geometry (read with --no-geometry: its "
                           "affine is a placeholder); exporting it would invent positions")
    first = vp.slices[0]
    classes = {h.sop_instance_uid: h.sop_class_uid for h in vp.slices}
    info = vol.metadata.get("resample")
    if info is None:
        per_slice = [[h.sop_instance_uid] for h in vp.slices]
        preserved = True
    else:
        per_slice = [[s["sop_instance_uid"] for s in sl["sources"] if s.get("weight", 1) > 0]
                     for sl in info["output_slices"]]
        preserved = False
    thick = {h.slice_thickness for h in vp.slices}
    t = thick.pop() if len(thick) == 1 else None
    return Reference(
        "source of the volume", os.path.dirname(os.path.abspath(first.path)),
        first.path, first.modality, first.series_instance_uid, first.study_instance_uid,
        first.series_number, first.series_description, np.asarray(vol.affine, float),
        tuple(vol.array.shape[:3][::-1]),
        per_slice, preserved, classes, slice_thickness=t if t and t > 0 else None,
        reconstruction=getattr(vp, "kind", ""))


def reference_from_dicom(path: str) -> Reference:
    """A DICOM folder (or file) of one study and one frame of reference."""
    from ..discovery import scan
    from ..errors import AmbiguousInputError, NoDicomError
    result = scan(path)
    headers = [h for g in result.groups for h in g.slices]
    if not headers:
        raise NoDicomError(f"{path}: no DICOM image found to use as the reference "
                           f"({len(result.skipped)} file(s) skipped)")
    studies = sorted({h.study_instance_uid for h in headers})
    if len(studies) != 1:
        raise AmbiguousInputError(f"{path}: the reference holds {len(studies)} studies "
                                  f"({', '.join(studies)}); the identity to keep is ambiguous",
                                  hint="pass one study's folder or a conversion sidecar")
    planes = []
    for h in headers:
        if h.ipp is not None and h.iop is not None and h.pixel_spacing is not None \
                and h.number_of_frames == 1:
            planes.append((np.asarray(h.iop, float), np.asarray(h.ipp, float),
                           np.asarray(h.pixel_spacing, float), h.rows, h.columns, h))
    series = result.series
    first = series[0].first
    ref = Reference("dicom", os.path.abspath(path), first.path, first.modality, planes=planes,
                    source_study_uid=studies[0])
    if len(series) == 1:
        ref.source_series_uid = first.series_instance_uid
        ref.source_series_number = first.series_number
        ref.source_series_description = first.series_description
    ref.sop_classes = {h.sop_instance_uid: h.sop_class_uid for h in headers}
    ref.frames = sorted({h.frame_of_reference_uid for h in headers if h.frame_of_reference_uid})
    return ref


def match_planes(ref: Reference, geom: SliceGeometry, shape_yx: tuple):
    """Per written slice, the one reference image on exactly that plane (same Rows/Columns,
    IOP and PixelSpacing within Tolerances.same_grid_mm, IPP within .plane_match_mm:
    geometry.match_planes), or None."""
    if not ref.planes:
        return None
    hits = match_plane_indices([p[0] for p in ref.planes], [p[1] for p in ref.planes],
                               [p[2] for p in ref.planes], [(p[3], p[4]) for p in ref.planes],
                               geom.iop, geom.pixel_spacing, shape_yx, geom.ipps)
    return None if hits is None else [ref.planes[i][5] for i in hits]


def same_grid(ref: Reference, shape_zyx: tuple, affine: np.ndarray) -> bool:
    """The volume (its (nz, ny, nx) shape and LPS affine) is on the reference's grid."""
    if ref.grid_affine is None or ref.grid_shape_xyz is None:
        return False
    return tuple(shape_zyx[:3][::-1]) == tuple(ref.grid_shape_xyz) and \
        float(np.max(np.abs(np.asarray(affine) - ref.grid_affine))) <= SAME_GRID_MM


def slice_sources(ref: Optional[Reference], shape_zyx: tuple, affine: np.ndarray,
                  geom: SliceGeometry, notes: list):
    """Per written slice, the source instances [(sop_class, sop_uid, series_uid)], and whether
    spatial locations are preserved; ``(None, None)`` without per-instance sources."""
    if ref is None:
        return None, None
    nz, shape_yx = shape_zyx[0], tuple(shape_zyx[1:3])
    if ref.slice_sources is not None:
        if not same_grid(ref, shape_zyx, affine):
            notes.append("the volume is not on the grid of its reference (cropped, resampled or "
                         "another volume): no per-instance source references, only the source "
                         "series (RelatedSeriesSequence)")
            return None, None
        order = range(nz - 1, -1, -1) if geom.z_reversed else range(nz)
        per = [[(ref.sop_classes.get(u, ""), u, ref.source_series_uid)
                for u in dict.fromkeys(ref.slice_sources[z])] for z in order]  # frames: once
        return per, ref.spatially_preserved
    matched = match_planes(ref, geom, shape_yx) if ref.planes else None
    if matched is None:
        notes.append("no image of the reference lies on each written slice's plane: no "
                     "per-instance source references")
        return None, None
    ref.source_series_uid = matched[0].series_instance_uid
    ref.source_series_number = matched[0].series_number
    ref.source_series_description = matched[0].series_description
    ref.first_file = matched[0].path
    ref.modality = matched[0].modality
    ref.matched = True
    return [[(h.sop_class_uid, h.sop_instance_uid, h.series_instance_uid)] for h in matched], True


def _text(ds, kw) -> Optional[str]:
    if kw not in ds:
        return None
    v = ds[kw].value
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)


@dataclass
class Identity:
    """What the series keeps of its reference (or makes new for a standalone series)."""

    patient: dict              # keyword -> text, of PATIENT_KEYWORDS
    study: dict                # keyword -> text, of STUDY_KEYWORDS (StudyInstanceUID always)
    for_uid: str               # FrameOfReferenceUID
    pri: Optional[str] = None  # PositionReferenceIndicator
    copy: dict = field(default_factory=dict)      # SERIES_COPY_KEYWORDS -> DataElement
    elements: dict = field(default_factory=dict)  # MR / CT acquisition keyword -> DataElement
    charset: Optional[object] = None              # the reference's SpecificCharacterSet
    notes: list = field(default_factory=list)

    @property
    def study_uid(self) -> str:
        return self.study["StudyInstanceUID"]

    def text(self, kw: str) -> str:
        """An acquisition element's value as text ("" when absent or empty)."""
        return _elem_text(self.elements, kw)


def identity(ref: Optional[Reference]) -> Identity:
    """Patient, Study, FrameOfReference and copied series attributes."""
    if ref is None:
        return Identity({}, {"StudyInstanceUID": new_uid()}, new_uid())
    ds = _read_dicom(ref.first_file)
    patient = {k: _text(ds, k) for k in PATIENT_KEYWORDS if k in ds}
    study = {k: _text(ds, k) for k in STUDY_KEYWORDS if k in ds}
    out_notes = []
    if not study.get("StudyInstanceUID"):
        raise InputError(f"{ref.first_file}: the reference has no (0020,000D) 'Study Instance "
                         "UID'; its study identity cannot be kept")
    if ref.source_study_uid and study["StudyInstanceUID"] != ref.source_study_uid:
        raise InputError(f"{ref.first_file}: its (0020,000D) 'Study Instance UID' is "
                         f"'{study['StudyInstanceUID']}', the reference {ref.path} says "
                         f"'{ref.source_study_uid}'")
    for_uid = _text(ds, "FrameOfReferenceUID") or ""
    if ref.kind == "dicom" and not ref.matched and len(ref.frames) > 1:
        from ..errors import AmbiguousInputError
        raise AmbiguousInputError(f"{ref.path}: the reference holds {len(ref.frames)} frames of "
                                  "reference and no series with an image on each written "
                                  "slice's plane, so the frame of reference to keep is ambiguous",
                                  hint="pass the source series' folder or its sidecar")
    if not for_uid:
        for_uid = new_uid()
        out_notes.append(f"the reference {ref.first_file} has no (0020,0052) 'Frame of Reference "
                         "UID': a new one was made (the series is not claimed to share the "
                         "source's patient coordinate system)")
    return Identity(patient, study, for_uid, _text(ds, "PositionReferenceIndicator"),
                    {k: ds[k] for k in SERIES_COPY_KEYWORDS if k in ds},
                    {k: ds[k] for k in MR_COPY_KEYWORDS + CT_COPY_KEYWORDS if k in ds},
                    ds.SpecificCharacterSet if ds.get("SpecificCharacterSet") else None,
                    out_notes)


def _elem_text(elements: dict, kw: str) -> str:
    e = elements.get(kw)
    if e is None or e.value is None:
        return ""
    v = e.value
    return "\\".join(map(str, v)) if type(v).__name__ == "MultiValue" else str(v)

