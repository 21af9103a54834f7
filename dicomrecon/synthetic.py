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
    pixels = spec.stored_slice(i, ipp)
    order = ">" if spec.transfer_syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    return ds


def expected_values(spec: SeriesSpec, world: np.ndarray) -> np.ndarray:
    """The value a correct reader returns at LPS ``world`` positions that lie on a source pixel
    (phantom, quantised as the stored integers were, with slice 0's rescale)."""
    v = spec.phantom(world)
    return np.rint((v - spec.intercept(0)) / spec.slope(0)) * spec.slope(0) + spec.intercept(0)


__all__ = ["SeriesSpec", "write_series", "ramp_phantom", "expected_values", "replace"]
