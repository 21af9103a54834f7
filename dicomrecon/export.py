"""Export a volume as a derived DICOM series that dicomrecon, SimpleITK and dcm2niix read back.

:func:`export_series` writes any 3D volume dicomrecon can hold - a
:class:`~dicomrecon.volume.Volume` (e.g. from :func:`dicomrecon.read_volume`), a
``SimpleITK.Image``, a NIfTI / NRRD / MHA file or a DICOM folder holding one volume - as one
single-frame DICOM file per slice.

Geometry
    Slice ``k`` gets ImagePositionPatient ``affine @ (0, 0, k, 1)`` and every slice gets
    ImageOrientationPatient from the direction's x (row) and y (column) axes, PixelSpacing
    ``[y spacing, x spacing]``, SpacingBetweenSlices (the z spacing), SliceThickness (the z
    spacing; the source's SliceThickness for a volume stacked as acquired on exactly its
    reference's grid), and SliceLocation ``IPP . cross(row, column)``.  Oblique grids are
    written as they are.  A
    sheared grid (axes not perpendicular, e.g. a gantry tilt kept with ``--tilt preserve``) is
    refused, naming the angles.  A left-handed grid (z against ``cross(row, column)``, as many
    NIfTI files are) is written with its slices in reverse order, because every DICOM reader
    stacks slices along ``cross(row, column)``: the same voxels at the same world positions,
    read back with the z axis reversed (``ExportResult.z_reversed``).

Identity
    With a reference - ``like=`` a DICOM folder or the JSON sidecar of a dicomrecon conversion;
    automatically the sidecar ``NAME.json`` beside an input ``NAME.nii.gz``, the source series of
    a DICOM folder input, or the source of a Volume read by dicomrecon - the Patient (name, ID,
    issuer, birth date, sex), the Study (UID, date, time, ID, accession number, referring
    physician, description) and the FrameOfReferenceUID are read from the reference's DICOM
    files and kept.  The series gets ImageType ``DERIVED\\SECONDARY``, a DerivationDescription,
    a RelatedSeriesSequence naming the source series and, when the volume is on the source's
    grid, per-instance SourceImageSequence items (the source slice, or for a resampled volume
    every source slice it was interpolated from) mirrored in ReferencedSeriesSequence.
    ``standalone=True`` ignores the automatic reference.  ``modality=`` overrides the Modality
    (e.g. ``OT`` for a label image made from a CT, which is not HU).
    Without a reference: new Study and FrameOfReference, optional patient name and ID.

UIDs
    Every new UID (Series, SOP Instance, and Study / FrameOfReference without a reference) is
    ``2.25.<integer of a random UUID>`` (ITU-T X.667 / ISO/IEC 9834-8, DICOM PS3.5 B.2): it
    needs no registered root and two exports never collide (SimpleITK's example derives its
    SeriesInstanceUID from the date and time, which collides).

Values (:func:`plan_values`, pure numpy)
    Stored as 16-bit integers, one RescaleSlope / RescaleIntercept for the whole series.
    Integer data (and float data whose values are all whole numbers) are exact: stored as they
    are when they fit uint16 or int16, else with an integer RescaleIntercept when their range
    spans at most 65535.  CT keeps HU with the usual intercept: stored = HU + 1024 (uint16, or
    int16 when that does not fit), RescaleIntercept -1024, RescaleType HU.  Other float data
    are quantised onto uint16 with RescaleIntercept = the minimum and RescaleSlope = range /
    65535 (the finest step 16 bits allow); the step and the largest error are reported
    (``ExportResult.values``).  NaN or infinite values are refused.  Label images (integers)
    stay exact.  InstanceNumber counts from 1.

SOP class (:func:`choose_sop_class`)
    The Modality is ``modality=``, else the reference's, else that of the volume's DICOM
    source, else OT (a NIfTI file alone does not say).
    * Modality CT: **CT Image Storage**.  Its IOD is satisfiable for any derived CT: the CT Image
      module needs only rescale (which CT always has here), 16-bit pixels and Type 2
      attributes (KVP copied from the reference or empty; AcquisitionNumber empty).
    * Modality MR, when no rescale is needed (integers stored as they are) and the reference
      supplies the MR Image module's Type 1 ScanningSequence and SequenceVariant:
      **MR Image Storage**, with the reference's MR acquisition attributes.  The MR IOD has
      no Modality LUT module, so MR data that need RescaleSlope / Intercept are not written as
      MR Image Storage.
    * Everything else (float or rescaled MR, other modalities, no reference, RGB): **Secondary
      Capture Image Storage** (single frame, Modality kept, ConversionType WSD), whose IOD has
      the Modality LUT module for rescale.  The SC IOD has no Image Plane or Frame of Reference
      module, so ImagePositionPatient, ImageOrientationPatient, SliceThickness,
      SpacingBetweenSlices, SliceLocation and FrameOfReferenceUID are standard extended
      attributes there (dciodvfy warns); dicomrecon, SimpleITK (GDCM) and dcm2niix all read them.
    * Multi-frame objects are not used: dicomrecon and many tools read single-frame series.

Output
    The series is written into a temporary folder beside ``outdir`` and renamed into place;
    an existing non-empty ``outdir`` is replaced only with ``force=True`` (OutputError
    otherwise), and never when it is, holds, or lies inside an input.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from . import __version__
from .errors import (DicomReconError, ExitCode, InputError, OutputError, RefusedError)
from . import geometry as geo
from .geometry import SliceGeometry, decompose_affine, patient_orientation
from .volume import Volume
from .writers import is_inside, make_writable_folder

#: Root of every UID dicomrecon makes: "2.25." + the integer of a random (version 4) UUID.
UID_ROOT = "2.25."

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SOP_CLASS_NAMES = {CT_IMAGE_STORAGE: "CT Image Storage", MR_IMAGE_STORAGE: "MR Image Storage",
                   SC_IMAGE_STORAGE: "Secondary Capture Image Storage"}

#: Volume files read with SimpleITK (which reads NIfTI into LPS).
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Affines of a volume and its sidecar agree within this many mm (NIfTI stores the sform in
#: float32).  The shear tolerance is geometry.ORTHO_TOL.
SAME_GRID_MM = 1e-4

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
IMAGE_TYPE_VALUE3 = {CT_IMAGE_STORAGE: ["AXIAL"], MR_IMAGE_STORAGE: ["OTHER"]}


class ExportUsageError(DicomReconError):
    """Options that contradict each other (exit code 2, like any usage error)."""

    exit_code = ExitCode.USAGE


def new_uid() -> str:
    """A new UID under :data:`UID_ROOT` (at most 44 characters)."""
    return UID_ROOT + str(uuid.uuid4().int)


def ds_str(x: float) -> str:
    """The most precise Decimal String (VR DS, at most 16 characters) for ``x``.

    >>> ds_str(-123.45678901234567), ds_str(1 / 3), ds_str(0.0)
    ('-123.45678901235', '0.33333333333333', '0')
    """
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{x} cannot be a DICOM Decimal String")
    if x == 0:
        return "0"
    for p in range(16, 0, -1):
        s = f"{x:.{p}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"{x} does not fit a 16-character Decimal String")  # pragma: no cover


# ============================================================================================
# Values (pure numpy)
# ============================================================================================
@dataclass(frozen=True)
class ValueEncoding:
    """How the volume's values are stored: ``value = stored * slope + intercept``."""

    stored_dtype: str        # "uint16", "int16" or "uint8" (RGB)
    slope: float             # RescaleSlope as written
    intercept: float         # RescaleIntercept as written
    rescale: bool            # RescaleSlope/Intercept written (always for CT)
    exact: bool              # every value reads back exactly
    step: float              # quantisation step (value units per stored integer)
    max_error: float         # largest |read back - value| over the volume (float64 arithmetic)
    value_range: tuple       # (min, max) of the input values
    input_dtype: str
    rescale_type: str = ""   # "HU" for CT, else "US" (unspecified) when a rescale is written

    @property
    def slope_ds(self) -> str:
        return ds_str(self.slope)

    @property
    def intercept_ds(self) -> str:
        return ds_str(self.intercept)

    def describe(self) -> str:
        how = (f"{self.stored_dtype}, RescaleSlope {self.slope_ds}, RescaleIntercept "
               f"{self.intercept_ds}" if self.rescale else f"{self.stored_dtype}, no rescale")
        if self.exact:
            return f"exact ({how})"
        return (f"quantised ({how}): step {self.step:.6g}, largest error {self.max_error:.3g} "
                f"(input {self.input_dtype}, range {self.value_range[0]:.6g} to "
                f"{self.value_range[1]:.6g})")

    def to_dict(self) -> dict:
        return {"stored_dtype": self.stored_dtype, "rescale_slope": self.slope_ds,
                "rescale_intercept": self.intercept_ds, "rescale": self.rescale,
                "rescale_type": self.rescale_type, "exact": self.exact,
                "quantisation_step": self.step, "max_error": self.max_error,
                "value_range": list(self.value_range), "input_dtype": self.input_dtype}


U16 = (0, 65535)
I16 = (-32768, 32767)


def _fits(lo, hi, rng) -> bool:
    return rng[0] <= lo and hi <= rng[1]


def plan_values(array: np.ndarray, *, ct: bool = False):
    """Choose the 16-bit storage of ``array`` and encode it.

    array : (nz, ny, nx) numeric array (bool, any integer or float type)
    ct : keep CT conventions (stored = HU + 1024, RescaleIntercept -1024, RescaleType HU)
    Returns ``(encoding, stored)`` with ``stored`` the (nz, ny, nx) uint16/int16 array.
    Raises :class:`RefusedError` for NaN / infinite values.

    >>> enc, stored = plan_values(np.array([[[0, 7, 300]]], dtype=np.int32))
    >>> enc.stored_dtype, enc.exact, enc.rescale, stored.tolist()
    ('uint16', True, False, [[[0, 7, 300]]])
    >>> enc, stored = plan_values(np.array([[[-1000, 0, 2000]]], dtype=np.int16), ct=True)
    >>> enc.stored_dtype, enc.intercept, stored.tolist()
    ('uint16', -1024.0, [[[24, 1024, 3024]]])
    """
    a = np.asarray(array)
    in_dtype = str(a.dtype)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "uif":
        raise RefusedError(f"values of type {a.dtype} cannot be stored as DICOM pixels; "
                           "expected integers or floats")
    rtype = "HU" if ct else "US"
    if a.size == 0:
        raise RefusedError("the volume is empty (no voxels)")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise RefusedError(f"{int(bad.sum())} voxel(s) are NaN or infinite; DICOM integer "
                               "pixels cannot hold them", hint="replace them (e.g. with 0) first")
        whole = bool(np.all(a == np.rint(a))) and float(np.abs(a).max()) < 2.0 ** 53
        lo, hi = float(a.min()), float(a.max())
        if whole:
            lo, hi = int(lo), int(hi)
    else:
        whole = True
        lo, hi = int(a.min()), int(a.max())
    rng = (lo, hi)

    def exact(dtype, intercept, rescale):
        wide = np.int64 if a.dtype.kind == "f" or a.dtype.itemsize > 2 else np.int32
        stored = (a.astype(wide) - intercept).astype(dtype) if intercept else a.astype(dtype)
        return ValueEncoding(str(np.dtype(dtype)), 1.0, float(intercept), rescale, True, 1.0,
                             0.0, rng, in_dtype, rtype if rescale else ""), stored

    if whole:
        if ct:
            for dt, rr in ((np.uint16, U16), (np.int16, I16)):
                if _fits(lo + 1024, hi + 1024, rr):
                    return exact(dt, -1024, True)
        kinds = ((np.int16, I16), (np.uint16, U16)) if a.dtype == np.int16 else \
            ((np.uint16, U16), (np.int16, I16))
        for dt, rr in kinds:  # int16 input stays int16 when it fits, else uint16 first
            if _fits(lo, hi, rr):
                return exact(dt, 0, ct)
        if hi - lo <= 65535:
            return exact(np.uint16, lo, True)
    # Quantise onto uint16: value = stored * slope + intercept, intercept <= min.
    lo, hi = float(lo), float(hi)
    intercept = float(ds_str(lo))
    if intercept > lo:
        intercept = float(ds_str(lo - abs(lo) * 1e-14 - 1e-300))
    span = hi - intercept
    if span <= 0:
        slope = 1.0
    else:
        slope = float(ds_str(span / 65535.0))
        if span / slope > 65535.0 + 1e-9:
            slope = float(ds_str(slope * (1 + 1e-12)))
    stored = np.clip(np.rint((a.astype(np.float64) - intercept) / slope), 0, 65535)
    err = float(np.max(np.abs(stored * slope + intercept - a.astype(np.float64))))
    enc = ValueEncoding("uint16", slope, intercept, True, err == 0.0, slope, err,
                        (lo, hi), in_dtype, rtype)
    return enc, stored.astype(np.uint16)


# ============================================================================================
# Geometry (pure numpy)
# ============================================================================================
def slice_geometry(affine: np.ndarray, nz: int) -> SliceGeometry:
    """:func:`dicomrecon.geometry.slice_geometry`, refusing (exit 5) a sheared grid."""
    try:
        return geo.slice_geometry(affine, nz)
    except geo.GeometryError as exc:
        raise RefusedError(str(exc)) from None


def check_orthogonal(direction: np.ndarray) -> None:
    """:func:`dicomrecon.geometry.check_orthogonal`, refusing (exit 5) a sheared grid."""
    try:
        geo.check_orthogonal(direction)
    except geo.GeometryError as exc:
        raise RefusedError(str(exc)) from None


# ============================================================================================
# References
# ============================================================================================
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
    """True when ``path`` is a JSON sidecar written by dicomrecon convert."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and "dicomrecon_version" in d and "source" in d and "volume" in d


def sidecar_beside(path: str) -> Optional[str]:
    """``NAME.json`` beside ``NAME.nii.gz`` (or .nii/.nrrd/.mha...) when dicomrecon wrote it."""
    for ext in VOLUME_EXTENSIONS:
        if path.lower().endswith(ext):
            cand = path[: -len(ext)] + ".json"
            return cand if os.path.isfile(cand) and is_sidecar(cand) else None
    return None


def reference_from_sidecar(path: str) -> Reference:
    """The reference a conversion's sidecar describes, checked against its source files."""
    try:
        with open(path, encoding="utf-8") as f:
            side = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the sidecar ({exc})")
    if not (isinstance(side, dict) and "source" in side and "volume" in side):
        raise InputError(f"{path}: not a dicomrecon sidecar (no 'source' and 'volume' fields)",
                         hint="--like takes a DICOM folder or the NAME.json of a conversion")
    src, vol = side["source"], side["volume"]
    if side.get("reconstruction") == "placeholder":
        raise RefusedError(f"{path}: the converted volume has no patient geometry (written with "
                           "--no-geometry); it cannot be a reference")
    root = src.get("input") or ""
    base = root if os.path.isdir(root) else os.path.dirname(root)
    listed = side.get("source_slices") or side.get("slices") or []
    files = {s["sop_instance_uid"]: os.path.join(base, s["file"]) for s in listed
             if s.get("file") and s.get("sop_instance_uid")}
    if not files:
        raise InputError(f"{path}: the sidecar lists no source files", hint="pass --like with "
                         "the source DICOM folder instead")
    missing = [p for p in files.values() if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{path}: {len(missing)} of its {len(files)} source DICOM file(s) are not "
                         f"readable, e.g. {missing[0]} (the sidecar's source.input is {root!r})",
                         hint="pass --like with the source DICOM folder, or --standalone")
    from .engine.gdcm_headers import read_uids
    classes = {}
    found = read_uids(list(files.values()))  # one GDCM pass over the sources
    for uid, p in files.items():
        sop, sop_class = found.get(p, ("", ""))
        if sop != uid:
            raise InputError(f"{p}: its (0008,0018) 'SOP Instance UID' is "
                             f"'{sop}', the sidecar {path} says '{uid}': "
                             "the source changed since the conversion")
        classes[uid] = sop_class
    if side.get("reconstruction") == "resample":
        per_slice = [[s["sop_instance_uid"] for s in sl.get("sources", [])
                      if s.get("weight", 1) > 0] for sl in side.get("slices", [])]
        preserved = False
    else:
        per_slice = [[sl["sop_instance_uid"]] for sl in side.get("slices", [])]
        preserved = True
    thick = (side.get("tags") or {}).get("SliceThickness")
    return Reference(
        "sidecar", os.path.abspath(path), next(iter(files.values())), src.get("modality") or "",
        src.get("series_instance_uid"), src.get("study_instance_uid"), src.get("series_number"),
        src.get("series_description") or "", np.asarray(vol["affine_lps"], float),
        tuple(vol["shape_xyz"]), per_slice, preserved, classes,
        slice_thickness=float(thick) if isinstance(thick, (int, float)) and thick > 0 else None,
        reconstruction=side.get("reconstruction", ""))


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
    from .discovery import scan
    from .errors import AmbiguousInputError, NoDicomError
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


def _match_planes(ref: Reference, geom: SliceGeometry, shape_yx: tuple):
    """Per written slice, the one reference image on exactly that plane (same Rows/Columns,
    IOP within 1e-4, PixelSpacing within 1e-4 mm, IPP within 1e-3 mm), or None."""
    if not ref.planes:
        return None
    iop = np.array([p[0] for p in ref.planes])
    ipp = np.array([p[1] for p in ref.planes])
    ps = np.array([p[2] for p in ref.planes])
    size = np.array([(p[3], p[4]) for p in ref.planes])
    same = (np.all(size == shape_yx, axis=1) & np.all(np.abs(iop - geom.iop) <= 1e-4, axis=1)
            & np.all(np.abs(ps - np.asarray(geom.pixel_spacing)) <= 1e-4, axis=1))
    out = []
    for target in geom.ipps:
        hits = np.flatnonzero(same & np.all(np.abs(ipp - target) <= 1e-3, axis=1))
        if len(hits) != 1:
            return None
        out.append(ref.planes[hits[0]][5])
    return out


# ============================================================================================
# Export
# ============================================================================================
@dataclass
class ExportResult:
    outdir: str
    files: list                      # written file paths, in InstanceNumber order
    sop_class_uid: str
    modality: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    values: Optional[ValueEncoding]   # None for RGB
    shape_xyz: tuple
    z_reversed: bool
    reference: Optional[str] = None   # "kind path", or None for a standalone series
    source_references: int = 0        # instances with a SourceImageSequence
    notes: list = field(default_factory=list)

    @property
    def sop_class_name(self) -> str:
        return SOP_CLASS_NAMES.get(self.sop_class_uid, self.sop_class_uid)

    @property
    def quantisation_step(self) -> Optional[float]:
        """Value units per stored integer (1 for exact integers)."""
        return None if self.values is None else self.values.step


def choose_sop_class(modality: str, *, rescale: bool, rgb: bool = False,
                     mr_attributes: bool = False) -> str:
    """The SOP class for a derived series (see the module docstring).

    >>> choose_sop_class("CT", rescale=True) == CT_IMAGE_STORAGE
    True
    >>> choose_sop_class("MR", rescale=True, mr_attributes=True) == SC_IMAGE_STORAGE
    True
    """
    if rgb:
        return SC_IMAGE_STORAGE
    if modality == "CT":
        return CT_IMAGE_STORAGE
    if modality == "MR" and not rescale and mr_attributes:
        return MR_IMAGE_STORAGE
    return SC_IMAGE_STORAGE


def load_source(source) -> tuple:
    """``(Volume, description, inputs, automatic reference)`` of an export source.

    ``inputs`` are the files and DICOM folders read, which the output may never replace.
    """
    if isinstance(source, Volume):
        return source, "volume", [], reference_from_volume(source)
    try:
        import SimpleITK as sitk
        if isinstance(source, sitk.Image):
            return _from_sitk(source, "SimpleITK image"), "SimpleITK image", [], None
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot export a {type(source).__name__}: pass a Volume, a "
                         "SimpleITK image, a volume file or a DICOM folder")
    path = os.path.abspath(os.fspath(source))
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if os.path.isfile(path) and path.lower().endswith(VOLUME_EXTENSIONS):
        import SimpleITK as sitk
        try:
            image = sitk.ReadImage(path)
        except RuntimeError as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            sform = nifti_sform(path) if "orthonormal" in msg else None
            if sform is not None:  # name the shear rather than ITK's complaint
                try:
                    check_orthogonal(decompose_affine(sform)[2])
                except RefusedError as refusal:
                    raise RefusedError(f"{path}: {refusal}") from None
            raise InputError(f"{path}: SimpleITK cannot read it ({msg})")
        vol = _from_sitk(image, path)
        side = sidecar_beside(path)
        auto = reference_from_sidecar(side) if side else None
        return vol, path, [path], auto
    if os.path.isdir(path) or os.path.isfile(path):
        from .api import read_volume
        vol = read_volume(path)
        return vol, path, [path if os.path.isdir(path) else os.path.dirname(path)], \
            reference_from_volume(vol)
    raise InputError(f"{path}: not a file or folder")  # pragma: no cover


def nifti_sform(path: str) -> Optional[np.ndarray]:
    """The (4, 4) sform of a NIfTI-1 file (RAS), or None when it has none or is not NIfTI-1."""
    import gzip
    import struct
    try:
        opener = gzip.open if path.lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            head = f.read(348)
    except OSError:
        return None
    if len(head) < 348:
        return None
    for e in "<>":
        if struct.unpack(e + "i", head[:4])[0] == 348:
            if struct.unpack(e + "h", head[254:256])[0] <= 0:
                return None
            rows = np.array(struct.unpack(e + "12f", head[280:328]), float).reshape(3, 4)
            return np.vstack([rows, [0, 0, 0, 1]])
    return None


def _from_sitk(image, what: str) -> Volume:
    if image.GetDimension() != 3:
        raise InputError(f"{what}: a {image.GetDimension()}D image; export writes one 3D volume")
    comps = image.GetNumberOfComponentsPerPixel()
    vol = Volume.from_sitk(image)
    if comps != 1 and not (comps == 3 and vol.array.dtype == np.uint8):
        raise InputError(f"{what}: {comps} components per voxel of type {vol.array.dtype}; "
                         "export writes grey values or 8-bit RGB")
    if comps == 3:
        vol.metadata["rgb"] = True
    return vol


def _is_rgb(vol: Volume) -> bool:
    return vol.array.ndim == 4 and vol.array.shape[-1] == 3 and vol.array.dtype == np.uint8 \
        and bool(vol.metadata.get("rgb", True))


def _check_text(keyword: str, tag: str, value: Optional[str], limit: int = 64):
    if value is None:
        return
    if len(value) > limit or "\\" in value or any(ord(c) < 32 for c in value):
        raise ExportUsageError(f"A {tag} '{keyword}' value of '{value}' is invalid, it must be at "
                               f"most {limit} characters with no backslash or control character")


def check_output(outdir: str, inputs: list, force: bool) -> str:
    """Validate ``outdir`` before any work: never an input, never non-empty without force."""
    outdir = os.path.abspath(os.fspath(outdir))
    for inp in inputs:
        if is_inside(outdir, inp) or is_inside(inp, outdir):
            raise OutputError(f"{outdir}: the output folder is, holds or lies inside the input "
                              f"{inp}; dicomrecon never writes into or replaces its input",
                              hint="choose another -o")
    if os.path.exists(outdir):
        if not os.path.isdir(outdir):
            raise OutputError(f"{outdir}: exists and is not a folder")
        if os.listdir(outdir) and not force:
            raise OutputError(f"{outdir}: the output folder exists and is not empty",
                              hint="choose a new folder, or pass --force to replace it")
    make_writable_folder(os.path.dirname(outdir), "parent folder")
    return outdir


def export_series(source: Union[Volume, str, os.PathLike, object], outdir, *,
                  like=None, series_number: Optional[int] = None,
                  series_description: Optional[str] = None,
                  patient_name: Optional[str] = None, patient_id: Optional[str] = None,
                  modality: Optional[str] = None, standalone: bool = False,
                  force: bool = False) -> ExportResult:
    """Write ``source`` as a derived DICOM series into the folder ``outdir``.

    source : a :class:`Volume`, a ``SimpleITK.Image``, or a path: a .nii / .nii.gz / .nrrd /
        .mha file (read with SimpleITK, in LPS) or a DICOM folder holding one volume
    like : a DICOM folder or a dicomrecon sidecar ``NAME.json`` whose Patient, Study and
        FrameOfReference identity the series keeps.  Without it, the automatic reference is
        used: ``NAME.json`` beside an input ``NAME.nii.gz``, the source series of a DICOM
        folder input or of a Volume read by dicomrecon (``result.notes`` says so).
    standalone : ignore any automatic reference: new Study and FrameOfReference.
    series_number, series_description : defaults: 1000 + the source's SeriesNumber (or 1000),
        and "<source description> derived" (or "dicomrecon export").
    patient_name, patient_id : only without a reference (a reference's patient is kept).
    modality : override the Modality (e.g. "OT" for a label image made from a CT).
    force : replace an existing non-empty ``outdir``.

    Raises :class:`InputError`, :class:`OutputError`, :class:`RefusedError` (sheared grid,
    NaN values, no geometry) and :class:`ExportUsageError`.
    """
    if like is not None and standalone:
        raise ExportUsageError("--like and --standalone contradict each other: pass one")
    _check_text("SeriesDescription", "(0008,103E)", series_description)
    _check_text("PatientName", "(0010,0010)", patient_name)
    _check_text("PatientID", "(0010,0020)", patient_id)
    _check_text("Modality", "(0008,0060)", modality, 16)
    if series_number is not None and not (0 <= int(series_number) <= 2 ** 31 - 1):
        raise ExportUsageError(f"A (0020,0011) 'Series Number' value of '{series_number}' is "
                               "invalid, it must be an integer from 0 to 2147483647")

    if isinstance(source, (str, os.PathLike)):  # fail fast, before reading the volume
        check_output(outdir, [os.fspath(source)], force)
    vol, what, inputs, auto = load_source(source)
    notes: list = []
    ref: Optional[Reference] = None
    if like is not None:
        like_path = os.path.abspath(os.fspath(like))
        if not os.path.exists(like_path):
            raise InputError(f"{like_path}: no such file or folder (--like)")
        if os.path.isfile(like_path) and like_path.lower().endswith(".json"):
            ref = reference_from_sidecar(like_path)
        elif os.path.isdir(like_path) or os.path.isfile(like_path):
            ref = reference_from_dicom(like_path)
        inputs.append(like_path)
    elif auto is not None and standalone:
        notes.append(f"standalone: the reference {auto.path} was not used (--standalone)")
    elif auto is not None:
        ref = auto
        if ref.kind == "sidecar":
            notes.append(f"reference: {ref.path} (the sidecar beside the input; --standalone "
                         "ignores it)")
        else:
            notes.append(f"reference: the source series of the input, {ref.path} "
                         "(--standalone ignores it)")
    if ref is not None:
        inputs.append(os.path.dirname(ref.first_file))
        if patient_name is not None or patient_id is not None:
            raise ExportUsageError("--patient-name / --patient-id apply only to a standalone "
                                   f"series: the reference ({ref.path}) keeps its patient",
                                   hint="drop them, or pass --standalone")
    outdir = check_output(outdir, inputs, force)

    rgb = _is_rgb(vol)
    if vol.array.ndim != 3 and not rgb:
        raise RefusedError(f"the volume has shape {vol.array.shape}; export writes one 3D "
                           "volume (nz, ny, nx) or 8-bit RGB (nz, ny, nx, 3)")
    nz, ny, nx = vol.array.shape[:3]
    geom = slice_geometry(vol.affine, nz)

    # --- source references, then identity (a DICOM folder's matched series decides it) -----
    per_slice, preserved = _sources(ref, vol, geom, (ny, nx), notes)
    ident = _identity(ref, notes)
    mod = (modality or (ref.modality if ref else "") or _volume_modality(vol) or "OT").upper()
    ct = mod == "CT" and not rgb
    if rgb:
        enc, stored = None, np.ascontiguousarray(vol.array)
        if geom.z_reversed:
            stored = stored[::-1]
    else:
        enc, stored = plan_values(vol.array, ct=ct)
        if geom.z_reversed:
            stored = stored[::-1]
    el = ident["elements"]
    has_mr = bool(_elem_text(el, "ScanningSequence")) and bool(_elem_text(el, "SequenceVariant"))
    sop_class = choose_sop_class(mod, rescale=bool(enc and enc.rescale), rgb=rgb,
                                 mr_attributes=has_mr and ref is not None and ref.modality == "MR")
    if mod == "MR" and sop_class != MR_IMAGE_STORAGE:
        why = ("a colour (RGB) image" if rgb else
               "the values need RescaleSlope/Intercept, which the MR IOD has no module for"
               if enc and enc.rescale else "no reference supplies the MR Image module's "
               "ScanningSequence and SequenceVariant")
        notes.append(f"written as Secondary Capture, not MR Image Storage: {why}")

    sn = series_number if series_number is not None else (
        1000 + ref.source_series_number if ref and ref.source_series_number is not None else 1000)
    if series_description is None:
        base = ref.source_series_description if ref else ""
        series_description = (f"{base} derived" if base else "dicomrecon export")[:64]
    thickness = geom.slice_spacing
    if ref is not None and ref.slice_thickness and ref.reconstruction == "stack" and \
            _same_grid(ref, vol):
        thickness = ref.slice_thickness

    now = datetime.datetime.now()
    series_uid = new_uid()
    common = dict(
        sop_class=sop_class, modality=mod, ident=ident, series_uid=series_uid,
        series_number=int(sn), series_description=series_description,
        patient_name=patient_name, patient_id=patient_id, geom=geom, enc=enc,
        thickness=thickness, now=now, ref=ref, rgb=rgb, preserved=preserved,
        derivation=_derivation(what, ref, enc, vol, geom),
    )
    tmp = _write_atomically(outdir, force, lambda folder: [
        _write_slice(folder, k, nz, stored[k], per_slice[k] if per_slice else None, **common)
        for k in range(nz)])
    files = [os.path.join(outdir, os.path.basename(p)) for p in tmp]
    if geom.z_reversed:
        notes.append("the volume's z axis runs against cross(row, column) (a left-handed grid): "
                     "slices were written in reverse order, so readers return the same voxels "
                     "with the z axis reversed")
    return ExportResult(
        outdir, files, sop_class, mod, series_uid, ident["study"]["StudyInstanceUID"],
        ident["for_uid"], int(sn), series_description, enc, (nx, ny, nz), geom.z_reversed,
        f"{ref.kind} {ref.path}" if ref else None,
        sum(1 for s in (per_slice or []) if s), notes + ident["notes"])


def _volume_modality(vol: Volume) -> str:
    vp = vol.metadata.get("plan") if isinstance(vol.metadata, dict) else None
    try:
        return vp.slices[0].modality or ""
    except (AttributeError, IndexError):
        return ""


def _same_grid(ref: Reference, vol: Volume) -> bool:
    if ref.grid_affine is None or ref.grid_shape_xyz is None:
        return False
    return tuple(vol.array.shape[:3][::-1]) == tuple(ref.grid_shape_xyz) and \
        float(np.max(np.abs(np.asarray(vol.affine) - ref.grid_affine))) <= SAME_GRID_MM


def _sources(ref: Optional[Reference], vol: Volume, geom: SliceGeometry, shape_yx, notes):
    """Per written slice, the source instances [(sop_class, sop_uid, series_uid)]."""
    if ref is None:
        return None, None
    nz = vol.array.shape[0]
    if ref.slice_sources is not None:
        if not _same_grid(ref, vol):
            notes.append("the volume is not on the grid of its reference (cropped, resampled or "
                         "another volume): no per-instance source references, only the source "
                         "series (RelatedSeriesSequence)")
            return None, None
        order = range(nz - 1, -1, -1) if geom.z_reversed else range(nz)
        per = [[(ref.sop_classes.get(u, ""), u, ref.source_series_uid)
                for u in dict.fromkeys(ref.slice_sources[z])] for z in order]  # frames: once
        return per, ref.spatially_preserved
    matched = _match_planes(ref, geom, shape_yx) if ref.planes else None
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


def _identity(ref: Optional[Reference], notes: list) -> dict:
    """Patient, Study, FrameOfReference and copied series attributes."""
    if ref is None:
        return {"patient": {}, "study": {"StudyInstanceUID": new_uid()}, "for_uid": new_uid(),
                "pri": None, "copy": {}, "elements": {}, "notes": []}
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
        from .errors import AmbiguousInputError
        raise AmbiguousInputError(f"{ref.path}: the reference holds {len(ref.frames)} frames of "
                                  "reference and no series with an image on each written "
                                  "slice's plane, so the frame of reference to keep is ambiguous",
                                  hint="pass the source series' folder or its sidecar")
    if not for_uid:
        for_uid = new_uid()
        out_notes.append(f"the reference {ref.first_file} has no (0020,0052) 'Frame of Reference "
                         "UID': a new one was made (the series is not claimed to share the "
                         "source's patient coordinate system)")
    copy = {k: ds[k] for k in SERIES_COPY_KEYWORDS if k in ds}
    pri = _text(ds, "PositionReferenceIndicator")
    if ds.get("SpecificCharacterSet"):
        copy["_charset"] = ds.SpecificCharacterSet
    return {"patient": patient, "study": study, "for_uid": for_uid, "pri": pri,
            "copy": copy, "notes": out_notes,
            "elements": {k: ds[k] for k in MR_COPY_KEYWORDS + CT_COPY_KEYWORDS if k in ds}}


def _elem_text(elements: dict, kw: str) -> str:
    e = elements.get(kw)
    if e is None or e.value is None:
        return ""
    v = e.value
    return "\\".join(map(str, v)) if type(v).__name__ == "MultiValue" else str(v)


def _derivation(what: str, ref: Optional[Reference], enc: Optional[ValueEncoding],
                vol: Volume, geom: SliceGeometry) -> str:
    parts = [f"dicomrecon {__version__} export of {os.path.basename(what) or what}"]
    if ref is not None and ref.source_series_uid:
        parts.append(f"source series {ref.source_series_uid}"
                     + (f" ({ref.reconstruction})" if ref.reconstruction else ""))
    if enc is not None:
        parts.append(("values exact, " if enc.exact else f"values quantised, step "
                      f"{enc.step:.6g}, ") + f"stored {enc.stored_dtype}")
    if geom.z_reversed:
        parts.append("slice order reversed (left-handed grid)")
    return "; ".join(parts)[:1024]


def _write_atomically(outdir: str, force: bool, write) -> list:
    parent, name = os.path.split(outdir)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{name}.", suffix=".dicomrecon-part", dir=parent)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot write here ({exc.strerror})")
    try:
        paths = write(tmp)
        os.chmod(tmp, 0o755)
        if os.path.isdir(outdir) and os.listdir(outdir):
            if not force:  # appeared while writing
                raise OutputError(f"{outdir}: the output folder exists and is not empty",
                                  hint="choose a new folder, or pass --force to replace it")
            old = tempfile.mkdtemp(prefix=f".{name}.", suffix=".dicomrecon-old", dir=parent)
            os.rename(outdir, os.path.join(old, name))
            try:
                os.rename(tmp, outdir)
            except OSError:
                os.rename(os.path.join(old, name), outdir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, outdir)  # an empty folder is replaced atomically
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{outdir}: cannot write the series ({exc.strerror or exc})")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths


def _write_slice(folder, k, nz, pixels, sources, *, sop_class, modality, ident, series_uid,
                 series_number, series_description, patient_name, patient_id, geom, enc,
                 thickness, now, ref, rgb, preserved, derivation) -> str:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    sop_uid = new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"DICOMRECON_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    texts = [series_description, patient_name or "", patient_id or "", derivation] + \
        [str(v) for v in list(ident["patient"].values()) + list(ident["study"].values()) if v]
    charset = ident["copy"].get("_charset")
    if any(any(ord(c) > 127 for c in t) for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif charset:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["DERIVED", "SECONDARY"] + IMAGE_TYPE_VALUE3.get(sop_class, [])
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    # Patient
    p = ident["patient"]
    ds.PatientName = p.get("PatientName", patient_name or "") or ""
    ds.PatientID = p.get("PatientID", patient_id or "") or ""
    if p.get("IssuerOfPatientID"):
        ds.IssuerOfPatientID = p["IssuerOfPatientID"]
    ds.PatientBirthDate = p.get("PatientBirthDate") or ""
    ds.PatientSex = p.get("PatientSex") or ""
    # Study
    s = ident["study"]
    ds.StudyInstanceUID = s["StudyInstanceUID"]
    ds.StudyDate = s.get("StudyDate", date) if ref else date
    ds.StudyTime = s.get("StudyTime", time) if ref else time
    ds.ReferringPhysicianName = s.get("ReferringPhysicianName") or ""
    ds.StudyID = s.get("StudyID") or ""
    ds.AccessionNumber = s.get("AccessionNumber") or ""
    if s.get("StudyDescription"):
        ds.StudyDescription = s["StudyDescription"]
    # Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = series_description
    for kw, elem in ident["copy"].items():
        if not kw.startswith("_"):
            ds[kw] = elem
    if "Laterality" not in ds and not str(ds.get("BodyPartExamined", "") or "").strip():
        ds.Laterality = ""  # Type 2C, required unless the body part is known to be unpaired
    if sop_class in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE) and "PatientPosition" not in ds:
        ds.PatientPosition = ""
    if ref is not None and ref.source_series_uid:
        item = Dataset()
        item.StudyInstanceUID = s["StudyInstanceUID"]
        item.SeriesInstanceUID = ref.source_series_uid
        item.PurposeOfReferenceCodeSequence = Sequence([])
        ds.RelatedSeriesSequence = Sequence([item])
    # Frame of reference
    ds.FrameOfReferenceUID = ident["for_uid"]
    if ident["pri"] or sop_class != SC_IMAGE_STORAGE:  # Type 2 in the FoR module (not in SC)
        ds.PositionReferenceIndicator = ident["pri"] or ""
    # Equipment
    ds.Manufacturer = "dicomrecon"
    ds.ManufacturerModelName = "dicomrecon export"
    ds.SoftwareVersions = __version__
    if sop_class == SC_IMAGE_STORAGE:
        ds.ConversionType = "WSD"
        ds.SecondaryCaptureDeviceManufacturer = "dicomrecon"
        ds.SecondaryCaptureDeviceManufacturerModelName = "dicomrecon export"
        ds.SecondaryCaptureDeviceSoftwareVersions = __version__
        ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    # Image
    ds.InstanceNumber = k + 1
    ds.ContentDate, ds.ContentTime = date, time
    row, col = geom.iop[:3], geom.iop[3:]
    ds.PatientOrientation = patient_orientation(row, col)
    ds.DerivationDescription = derivation
    if sources:
        items = []
        for cls, uid, _ in sources:
            it = Dataset()
            it.ReferencedSOPClassUID = cls
            it.ReferencedSOPInstanceUID = uid
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator = "121322", "DCM"
            code.CodeMeaning = "Source image for image processing operation"
            it.PurposeOfReferenceCodeSequence = Sequence([code])
            if preserved is not None:
                it.SpatialLocationsPreserved = "YES" if preserved else "NO"
            items.append(it)
        ds.SourceImageSequence = Sequence(items)
        by_series: dict = {}
        for cls, uid, ser in sources:
            by_series.setdefault(ser, []).append((cls, uid))
        ref_series = []
        for ser, insts in by_series.items():
            it = Dataset()
            it.SeriesInstanceUID = ser
            refs = []
            for cls, uid in insts:
                r = Dataset()
                r.ReferencedSOPClassUID = cls
                r.ReferencedSOPInstanceUID = uid
                refs.append(r)
            it.ReferencedInstanceSequence = Sequence(refs)
            ref_series.append(it)
        ds.ReferencedSeriesSequence = Sequence(ref_series)
    if sop_class == CT_IMAGE_STORAGE:
        ds.AcquisitionNumber = None
        ds.KVP = ident["elements"]["KVP"].value if "KVP" in ident["elements"] else None
    if sop_class == MR_IMAGE_STORAGE:
        inversion = "IR" in _elem_text(ident["elements"], "ScanningSequence").split("\\")
        for kw in MR_COPY_KEYWORDS:
            if kw in ident["elements"] and (kw != "InversionTime" or inversion):
                ds[kw] = ident["elements"][kw]
        for kw in MR_TYPE2 + (("InversionTime",) if inversion else ()):
            if kw not in ds:
                setattr(ds, kw, None)
    # Image plane
    ds.PixelSpacing = [ds_str(geom.pixel_spacing[0]), ds_str(geom.pixel_spacing[1])]
    ds.ImageOrientationPatient = [ds_str(v if abs(v) > 1e-15 else 0.0) for v in geom.iop]
    ipp = geom.ipps[k]
    ds.ImagePositionPatient = [ds_str(v) for v in ipp]
    ds.SliceThickness = ds_str(thickness)
    ds.SpacingBetweenSlices = ds_str(geom.slice_spacing)
    ds.SliceLocation = ds_str(float(ipp @ geom.normal))
    # Pixels
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    if rgb:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if enc.stored_dtype == "int16" else 0
        if enc.rescale:
            ds.RescaleIntercept = enc.intercept_ds
            ds.RescaleSlope = enc.slope_ds
            ds.RescaleType = enc.rescale_type or "US"
        lo, hi = enc.value_range
        ds.WindowCenter = ds_str((lo + hi) / 2)
        ds.WindowWidth = ds_str(max(float(hi - lo), 1.0))
        dt = np.dtype(enc.stored_dtype).newbyteorder("<")
        ds.PixelData = np.ascontiguousarray(pixels, dtype=dt).tobytes()
    path = os.path.join(folder, f"IM{k + 1:0{max(5, len(str(nz)))}d}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


__all__ = ["export_series", "ExportResult", "ValueEncoding", "plan_values", "slice_geometry",
           "choose_sop_class", "new_uid", "UID_ROOT", "ExportUsageError"]
