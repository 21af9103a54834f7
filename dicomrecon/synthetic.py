"""Synthetic DICOM series with exact geometry, for tests and benchmarks.

Every pixel of every slice holds ``phantom(world position of the pixel centre)``, so a test
can check any output voxel against the phantom at that voxel's world position, and a wrong
sort, flip, shear or spacing shows up as a wrong value.

>>> spec = SeriesSpec(n_slices=3)
>>> spec.ipps().shape
(3, 3)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def ramp_phantom(points: np.ndarray) -> np.ndarray:
    """A smooth, non-symmetric function of LPS position (mm): any flip or shift changes it."""
    p = np.asarray(points, dtype=float)
    return 3.0 * p[..., 0] - 2.0 * p[..., 1] + 5.0 * p[..., 2] + 100.0


@dataclass
class SeriesSpec:
    rows: int = 16
    columns: int = 12
    n_slices: int = 10
    pixel_spacing: tuple = (0.8, 0.6)            # (row spacing, column spacing) mm
    slice_step: float = 2.0                      # mm along the normal between slices
    iop: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    origin: tuple = (-10.0, -20.0, 30.0)         # IPP of slice 0
    tilt_deg: float = 0.0                        # origin drifts along the column direction
    positions: Optional[Sequence[Sequence[float]]] = None  # explicit IPPs override the above
    modality: str = "CT"
    dtype: str = "int16"                         # stored pixel type: int16, uint16, uint8
    bits_stored: Optional[int] = None
    slopes: Optional[Sequence[float]] = None     # per-slice RescaleSlope (None: 1)
    intercepts: Optional[Sequence[float]] = None # per-slice RescaleIntercept (None: 0 / -1024 CT)
    photometric: str = "MONOCHROME2"
    transfer_syntax: str = ExplicitVRLittleEndian
    phantom: Callable = ramp_phantom
    series_uid: str = field(default_factory=generate_uid)
    series_number: int = 3
    series_description: str = "synthetic axial"
    gantry_tilt_tag: Optional[float] = None
    pixel_padding_value: Optional[int] = None    # stored value, written as (0028,0120)
    instance_offset: int = 0                     # InstanceNumber of slice 0 is 1 + this
    extra_tags: dict = field(default_factory=dict)  # keyword -> value, set on every slice
    rgb: bool = False                            # 8-bit RGB: R = phantom, G = 255 - R, B = 7
    geometry: bool = True                        # False: no IPP / IOP (e.g. a CR image)
    shuffle_names: bool = False
    reverse_instance_numbers: bool = False
    seed: int = 0

    def orientation(self):
        row = np.asarray(self.iop[:3], float)
        col = np.asarray(self.iop[3:], float)
        return row, col, np.cross(row, col)

    def ipps(self) -> np.ndarray:
        if self.positions is not None:
            return np.asarray(self.positions, dtype=float).reshape(-1, 3)
        row, col, normal = self.orientation()
        k = np.arange(self.n_slices, dtype=float)[:, None]
        shift = np.tan(np.radians(self.tilt_deg)) * col
        return np.asarray(self.origin, float) + k * self.slice_step * (normal + shift)

    def slope(self, i: int) -> float:
        return 1.0 if self.slopes is None else float(self.slopes[i])

    def intercept(self, i: int) -> float:
        if self.intercepts is not None:
            return float(self.intercepts[i])
        return -1024.0 if self.modality == "CT" else 0.0

    def world_of_pixels(self, ipp: np.ndarray) -> np.ndarray:
        """(rows, columns, 3) LPS position of each pixel centre of a slice at ``ipp``."""
        row, col, _ = self.orientation()
        r = np.arange(self.rows, dtype=float)[:, None, None] * self.pixel_spacing[0]
        c = np.arange(self.columns, dtype=float)[None, :, None] * self.pixel_spacing[1]
        return np.asarray(ipp, float) + c * row + r * col

    def stored_slice(self, i: int, ipp: np.ndarray) -> np.ndarray:
        """Stored (pre-rescale) integers of slice ``i`` sampling the phantom."""
        value = self.phantom(self.world_of_pixels(ipp))
        raw = np.rint((value - self.intercept(i)) / self.slope(i))
        info = np.iinfo(self.dtype)
        bits = self.bits_stored or info.bits
        lo = info.min if info.min == 0 else -(2 ** (bits - 1))
        hi = 2 ** bits - 1 if info.min == 0 else 2 ** (bits - 1) - 1
        return np.clip(raw, lo, hi).astype(self.dtype)


def _rgb_slice(self, ipp) -> np.ndarray:
    """(rows, columns, 3) uint8 colour of a slice."""
    red = np.mod(np.rint(self.phantom(self.world_of_pixels(ipp))), 256).astype(np.uint8)
    return np.stack([red, 255 - red, np.full_like(red, 7)], axis=-1)


SeriesSpec.rgb_slice = _rgb_slice


def write_series(spec: SeriesSpec, folder: str, *, study_uid: Optional[str] = None) -> list:
    """Write ``spec`` as one file per slice into ``folder``; returns the paths in slice order."""
    os.makedirs(folder, exist_ok=True)
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    ipps = spec.ipps()
    n = len(ipps)
    rng = random.Random(spec.seed)
    names = [f"slice_{i:04d}.dcm" for i in range(n)]
    if spec.shuffle_names:
        names = [f"{rng.getrandbits(40):010x}" for _ in range(n)]
    paths = []
    for i, ipp in enumerate(ipps):
        ds = _slice_dataset(spec, i, ipp, study_uid, frame_uid)
        inst = (n - i if spec.reverse_instance_numbers else i + 1) + spec.instance_offset
        ds.InstanceNumber = inst
        path = os.path.join(folder, names[i])
        if spec.transfer_syntax == RLELossless:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _slice_dataset(spec: SeriesSpec, i: int, ipp, study_uid, frame_uid) -> Dataset:
    sop_class = CT_IMAGE_STORAGE if spec.modality == "CT" else MR_IMAGE_STORAGE
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = (ExplicitVRLittleEndian if spec.transfer_syntax == RLELossless
                              else spec.transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = spec.modality
    ds.Manufacturer = "dicomrecon synthetic"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYN0001"
    ds.SeriesNumber = spec.series_number
    ds.SeriesDescription = spec.series_description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if spec.geometry:
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in ipp]
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in spec.iop]
    ds.PixelSpacing = list(spec.pixel_spacing)
    ds.SliceThickness = abs(spec.slice_step)
    if spec.gantry_tilt_tag is not None:
        ds.GantryDetectorTilt = spec.gantry_tilt_tag
    info = np.iinfo(spec.dtype)
    ds.Rows, ds.Columns = spec.rows, spec.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated = info.bits
    ds.BitsStored = spec.bits_stored or info.bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if info.min < 0 else 0
    if spec.modality == "CT" or spec.slopes is not None or spec.intercepts is not None:
        ds.RescaleSlope = f"{spec.slope(i):.8g}"
        ds.RescaleIntercept = f"{spec.intercept(i):.8g}"
        if spec.modality == "CT":
            ds.RescaleType = "HU"
    if spec.pixel_padding_value is not None:
        ds.PixelPaddingValue = spec.pixel_padding_value
    for kw, value in spec.extra_tags.items():
        setattr(ds, kw, value)
    if spec.rgb:
        r = spec.rgb_slice(ipp)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            if kw in ds:
                delattr(ds, kw)
        ds.PixelData = r.tobytes()
        return ds
    pixels = spec.stored_slice(i, ipp)
    order = ">" if spec.transfer_syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    return ds


def expected_values(spec: SeriesSpec, world: np.ndarray) -> np.ndarray:
    """The value a correct reader returns at LPS ``world`` positions that lie on a source pixel
    (phantom, quantised as the stored integers were, with slice 0's rescale)."""
    v = spec.phantom(world)
    return np.rint((v - spec.intercept(0)) / spec.slope(0)) * spec.slope(0) + spec.intercept(0)


def write_enhanced(spec: SeriesSpec, path: str, *, frame_order: Optional[Sequence[int]] = None) -> str:
    """Write ``spec`` as ONE enhanced multi-frame file (Enhanced CT / MR Image Storage).

    Geometry and rescale live in the functional groups: PixelMeasures and PlaneOrientation
    shared, PlanePosition and PixelValueTransformation per frame (so per-frame rescale works);
    ``frame_order`` stores the slices in another order than along the normal.
    """
    ipps = spec.ipps()
    n = len(ipps)
    order = list(frame_order) if frame_order is not None else list(range(n))
    enh_class = "1.2.840.10008.5.1.4.1.1.2.1" if spec.modality == "CT" else "1.2.840.10008.5.1.4.1.1.4.1"
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = enh_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = enh_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), spec.series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality, ds.Manufacturer = spec.modality, "dicomrecon synthetic"
    ds.PatientName, ds.PatientID = "Synthetic^Phantom", "SYN0001"
    ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = spec.series_number, spec.series_description, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = n
    info = np.iinfo(spec.dtype)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = spec.rows, spec.columns, 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated = ds.BitsStored = info.bits
    ds.HighBit = info.bits - 1
    ds.PixelRepresentation = 1 if info.min < 0 else 0
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = list(spec.pixel_spacing)
    pm.SliceThickness = abs(spec.slice_step)
    po = Dataset()
    po.ImageOrientationPatient = [float(f"{v:.8f}") for v in spec.iop]
    shared.PixelMeasuresSequence = [pm]
    shared.PlaneOrientationSequence = [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, per = [], []
    for pos, i in enumerate(order):
        fr = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [float(f"{v:.6f}") for v in ipps[i]]
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = f"{spec.slope(i):.8g}", f"{spec.intercept(i):.8g}"
        pvt.RescaleType = "HU" if spec.modality == "CT" else "US"
        fc = Dataset()
        fc.StackID, fc.InStackPositionNumber = "1", i + 1
        fc.DimensionIndexValues = [1, i + 1]
        fr.PlanePositionSequence = [pp]
        fr.PixelValueTransformationSequence = [pvt]
        fr.FrameContentSequence = [fc]
        per.append(fr)
        frames.append(spec.stored_slice(i, ipps[i]))
    ds.PerFrameFunctionalGroupsSequence = per
    ds.PixelData = np.stack(frames).astype(np.dtype(spec.dtype).newbyteorder("<")).tobytes()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


__all__ = ["SeriesSpec", "write_series", "write_enhanced", "ramp_phantom", "expected_values",
           "replace"]
