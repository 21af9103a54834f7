"""DICOM building: the series-level dataset is built once (:func:`series_dataset`), and each
slice adds only what is its own (:func:`slice_dataset`): SOP Instance UID, InstanceNumber,
image position, SliceLocation, source references and pixels."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import __version__
from ..affines import SliceGeometry, patient_orientation
from .common import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SC_IMAGE_STORAGE, new_uid
from .reference import MR_COPY_KEYWORDS, MR_TYPE2, Identity, Reference
from .values import ValueEncoding, ds_str

#: ImageType value 3: CT requires AXIAL or LOCALIZER (AXIAL = any cross-section); MR requires a
#: value (defined term OTHER); Secondary Capture has no value 3.
IMAGE_TYPE_VALUE3 = {CT_IMAGE_STORAGE: ["AXIAL"], MR_IMAGE_STORAGE: ["OTHER"]}


def choose_sop_class(modality: str, *, rescale: bool, rgb: bool = False,
                     mr_attributes: bool = False) -> str:
    """The SOP class for a derived series (see the package docstring).

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


@dataclass(frozen=True)
class SeriesPlan:
    """Everything the series' files share, decided before the first file is written."""

    sop_class: str
    modality: str
    ident: Identity
    series_uid: str
    series_number: int
    series_description: str
    geom: SliceGeometry
    enc: Optional[ValueEncoding]          # None for RGB
    thickness: float
    shape_yx: tuple
    derivation: str
    ref: Optional[Reference] = None
    preserved: Optional[bool] = None      # SpatialLocationsPreserved of source references
    patient_name: Optional[str] = None    # standalone series only
    patient_id: Optional[str] = None
    now: Optional[datetime.datetime] = None

    @property
    def date(self) -> str:
        return self.now.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        return self.now.strftime("%H%M%S")

    def file_name(self, k: int) -> str:
        nz = len(self.geom.ipps)
        return f"IM{k + 1:0{max(5, len(str(nz)))}d}.dcm"


def _charset(ds, plan: SeriesPlan) -> None:
    ident = plan.ident
    texts = [plan.series_description, plan.patient_name or "", plan.patient_id or "",
             plan.derivation] + [str(v) for v in list(ident.patient.values()) +
                                 list(ident.study.values()) if v]
    if any(any(ord(c) > 127 for c in t) for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif ident.charset:
        ds.SpecificCharacterSet = ident.charset


def _patient_study(ds, plan: SeriesPlan) -> None:
    p, s, ref = plan.ident.patient, plan.ident.study, plan.ref
    ds.PatientName = p.get("PatientName", plan.patient_name or "") or ""
    ds.PatientID = p.get("PatientID", plan.patient_id or "") or ""
    if p.get("IssuerOfPatientID"):
        ds.IssuerOfPatientID = p["IssuerOfPatientID"]
    ds.PatientBirthDate = p.get("PatientBirthDate") or ""
    ds.PatientSex = p.get("PatientSex") or ""
    ds.StudyInstanceUID = s["StudyInstanceUID"]
    ds.StudyDate = s.get("StudyDate", plan.date) if ref else plan.date
    ds.StudyTime = s.get("StudyTime", plan.time) if ref else plan.time
    ds.ReferringPhysicianName = s.get("ReferringPhysicianName") or ""
    ds.StudyID = s.get("StudyID") or ""
    ds.AccessionNumber = s.get("AccessionNumber") or ""
    if s.get("StudyDescription"):
        ds.StudyDescription = s["StudyDescription"]


def _series(ds, plan: SeriesPlan) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    ds.Modality = plan.modality
    ds.SeriesInstanceUID = plan.series_uid
    ds.SeriesNumber = plan.series_number
    ds.SeriesDate, ds.SeriesTime = plan.date, plan.time
    ds.SeriesDescription = plan.series_description
    for kw, elem in plan.ident.copy.items():
        ds[kw] = elem
    if "Laterality" not in ds and not str(ds.get("BodyPartExamined", "") or "").strip():
        ds.Laterality = ""  # Type 2C, required unless the body part is known to be unpaired
    if plan.sop_class in (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE) and "PatientPosition" not in ds:
        ds.PatientPosition = ""
    if plan.ref is not None and plan.ref.source_series_uid:
        item = Dataset()
        item.StudyInstanceUID = plan.ident.study_uid
        item.SeriesInstanceUID = plan.ref.source_series_uid
        item.PurposeOfReferenceCodeSequence = Sequence([])
        ds.RelatedSeriesSequence = Sequence([item])
    ds.FrameOfReferenceUID = plan.ident.for_uid
    if plan.ident.pri or plan.sop_class != SC_IMAGE_STORAGE:  # Type 2 in FoR (not in SC)
        ds.PositionReferenceIndicator = plan.ident.pri or ""


def _equipment(ds, plan: SeriesPlan) -> None:
    ds.Manufacturer = "dicomrecon"
    ds.ManufacturerModelName = "dicomrecon export"
    ds.SoftwareVersions = __version__
    if plan.sop_class == SC_IMAGE_STORAGE:
        ds.ConversionType = "WSD"
        ds.SecondaryCaptureDeviceManufacturer = "dicomrecon"
        ds.SecondaryCaptureDeviceManufacturerModelName = "dicomrecon export"
        ds.SecondaryCaptureDeviceSoftwareVersions = __version__
        ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = plan.date, plan.time


def _acquisition(ds, plan: SeriesPlan) -> None:
    """The CT / MR Image module attributes copied from the reference (or Type 2 empty)."""
    el = plan.ident.elements
    if plan.sop_class == CT_IMAGE_STORAGE:
        ds.AcquisitionNumber = None
        ds.KVP = el["KVP"].value if "KVP" in el else None
    if plan.sop_class == MR_IMAGE_STORAGE:
        inversion = "IR" in plan.ident.text("ScanningSequence").split("\\")
        for kw in MR_COPY_KEYWORDS:
            if kw in el and (kw != "InversionTime" or inversion):
                ds[kw] = el[kw]
        for kw in MR_TYPE2 + (("InversionTime",) if inversion else ()):
            if kw not in ds:
                setattr(ds, kw, None)


def _image(ds, plan: SeriesPlan, rows: int, columns: int) -> None:
    """Image plane (all but the position) and the pixel description."""
    geom, enc = plan.geom, plan.enc
    ds.ContentDate, ds.ContentTime = plan.date, plan.time
    ds.PatientOrientation = patient_orientation(geom.iop[:3], geom.iop[3:])
    ds.DerivationDescription = plan.derivation
    ds.PixelSpacing = [ds_str(geom.pixel_spacing[0]), ds_str(geom.pixel_spacing[1])]
    ds.ImageOrientationPatient = [ds_str(v if abs(v) > 1e-15 else 0.0) for v in geom.iop]
    ds.SliceThickness = ds_str(plan.thickness)
    ds.SpacingBetweenSlices = ds_str(geom.slice_spacing)
    ds.Rows, ds.Columns = int(rows), int(columns)
    if enc is None:  # RGB
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
        return
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


def series_dataset(plan: SeriesPlan):
    """The attributes every file of the series shares, built once."""
    from pydicom.dataset import Dataset
    ds = Dataset()
    _charset(ds, plan)
    ds.ImageType = ["DERIVED", "SECONDARY"] + IMAGE_TYPE_VALUE3.get(plan.sop_class, [])
    ds.InstanceCreationDate, ds.InstanceCreationTime = plan.date, plan.time
    ds.SOPClassUID = plan.sop_class
    _patient_study(ds, plan)
    _series(ds, plan)
    _equipment(ds, plan)
    _acquisition(ds, plan)
    _image(ds, plan, *plan.shape_yx)
    return ds


def _source_references(ds, sources: list, preserved: Optional[bool]) -> None:
    """SourceImageSequence and ReferencedSeriesSequence of one slice's source instances."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
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


def slice_dataset(series, plan: SeriesPlan, k: int, stored: np.ndarray,
                  sources: Optional[list] = None):
    """File ``k`` of the series: ``series`` (:func:`series_dataset`, shared, not changed) plus
    this slice's UID, InstanceNumber, position, source references and ``stored`` pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID
    sop_uid = new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = plan.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"DICOMRECON_{__version__}"[:16]
    ds = Dataset()
    ds.update(series)  # the series' elements, shared: none of them is set below
    ds.file_meta = meta
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    ipp = plan.geom.ipps[k]
    ds.ImagePositionPatient = [ds_str(v) for v in ipp]
    ds.SliceLocation = ds_str(float(ipp @ plan.geom.normal))
    if sources:
        _source_references(ds, sources, plan.preserved)
    dt = np.dtype(np.uint8 if plan.enc is None else plan.enc.stored_dtype).newbyteorder("<")
    ds.PixelData = np.ascontiguousarray(stored, dtype=dt).tobytes()
    return ds


def write_slice(folder: str, series, plan: SeriesPlan, k: int, stored: np.ndarray,
                sources: Optional[list] = None) -> str:
    """Write file ``k`` of the series into ``folder``; returns its path."""
    path = os.path.join(folder, plan.file_name(k))
    slice_dataset(series, plan, k, stored, sources).save_as(path, enforce_file_format=True)
    return path
