"""BIDS sidecar keys (``convert --bids``): top-level BIDS names and units, as dcm2niix writes.

Each key is written only when its source tag is present in the volume's first image (never
guessed).  Times are in seconds, angles in degrees.  dicomrecon's own sidecar goes under the
single key ``"dicomrecon"`` of the same file.

=================================  ======================================  ==============
BIDS key                           source                                  unit
=================================  ======================================  ==============
Modality                           (0008,0060)
Manufacturer                       (0008,0070)
ManufacturersModelName             (0008,1090)
MagneticFieldStrength              (0018,0087)                             T
SeriesDescription                  (0008,103E)
ProtocolName                       (0018,1030)
SeriesNumber                       (0020,0011)
ImageType                          (0008,0008) (enhanced: FrameType)
ScanningSequence                   (0018,0020)
SequenceVariant                    (0018,0021)
SequenceName                       (0018,0024); enhanced (0018,9005); GE
                                   (0019,109C)
EchoTime                           (0018,0081) / EffectiveEchoTime         s (from ms)
RepetitionTime                     (0018,0080)                             s (from ms)
InversionTime                      (0018,0082)                             s (from ms)
FlipAngle                          (0018,1314)                             degrees
SliceThickness                     (0018,0050)                             mm
SpacingBetweenSlices               (0018,0088)                             mm
EchoNumber                         (0018,0086)
AcquisitionTime                    (0008,0032) as HH:MM:SS.ffffff
InPlanePhaseEncodingDirectionDICOM (0018,1312)
PhaseEncodingDirection             (0018,1312) + vendor polarity           i/j/k, sign
                                   (vendor.acquisition); omitted when the
                                   polarity is unknown
EffectiveEchoSpacing               1 / (phase bandwidth x ReconMatrixPE);  s
                                   GE (0043,102C) with ASSET 1
TotalReadoutTime                   EffectiveEchoSpacing x (ReconMatrixPE   s
                                   - 1)
SliceTiming                        vendor.acquisition slice times, minus   s
                                   the first
MultibandAccelerationFactor        vendor.acquisition
ConversionSoftware(Version)        dicomrecon
=================================  ======================================  ==============
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..vendor.acquisition import (ge_echo_spacing, multiband_factor, phase_bandwidth,
                                  phase_encoding, raw_slice_times)

#: (BIDS key, DICOM keyword, scale) of plain tags; scale 0.001 turns ms into s.
PLAIN = [
    ("Modality", "Modality", None), ("Manufacturer", "Manufacturer", None),
    ("ManufacturersModelName", "ManufacturerModelName", None),
    ("MagneticFieldStrength", "MagneticFieldStrength", 1.0),
    ("SeriesDescription", "SeriesDescription", None), ("ProtocolName", "ProtocolName", None),
    ("SeriesNumber", "SeriesNumber", 1), ("ScanningSequence", "ScanningSequence", None),
    ("SequenceVariant", "SequenceVariant", None), ("SequenceName", "SequenceName", None),
    ("EchoTime", "EchoTime", 0.001), ("RepetitionTime", "RepetitionTime", 0.001),
    ("InversionTime", "InversionTime", 0.001), ("FlipAngle", "FlipAngle", 1.0),
    ("SliceThickness", "SliceThickness", 1.0),
    ("SpacingBetweenSlices", "SpacingBetweenSlices", 1.0),
    ("EchoNumber", "EchoNumbers", 1),
    ("InPlanePhaseEncodingDirectionDICOM", "InPlanePhaseEncodingDirection", None),
]
#: Other tags holding the same value: (BIDS key, DICOM keyword or tag, vendor prefix or "").
FALLBACK = [("SequenceName", "PulseSequenceName", ""),          # enhanced MR (0018,9005)
            ("SequenceName", 0x0019109C, "GE")]                 # GE pulse sequence name
#: Enhanced-MR functional groups that hold some of the same values.
_ENHANCED = {"EchoTime": ("MREchoSequence", "EffectiveEchoTime"),
             "RepetitionTime": ("MRTimingAndRelatedParametersSequence", "RepetitionTime"),
             "FlipAngle": ("MRTimingAndRelatedParametersSequence", "FlipAngle"),
             "InPlanePhaseEncodingDirectionDICOM": ("MRFOVGeometrySequence",
                                                    "InPlanePhaseEncodingDirection"),
             "SliceThickness": ("PixelMeasuresSequence", "SliceThickness")}


def _value(v, scale):
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        vals = [_value(x, scale) for x in v]
        return vals if len(vals) > 1 else (vals[0] if vals else None)
    if scale is None:
        return str(v).strip() or None
    if isinstance(v, str) and "\\" in v:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return int(x) if scale == 1 and isinstance(scale, int) else round(x * scale, 9)


def _enhanced(ds, seq: str, kw: str):
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(group)
        if items and seq in items[0] and len(items[0][seq].value):
            v = items[0][seq].value[0].get(kw)
            if v is not None:
                return v
    return None


def plain_keys(ds) -> dict:
    out = {}
    for key, kw, scale in PLAIN:
        v = ds.get(kw)
        if (v is None or v == "") and key in _ENHANCED:
            v = _enhanced(ds, *_ENHANCED[key])
        val = _value(v, scale)
        if isinstance(val, list) and scale is None:  # multi-valued CS: as DICOM writes it
            val = "\\".join(val)
        if val is not None:
            out[key] = val
    vendor = str(ds.get("Manufacturer") or "").upper()
    for key, kw, maker in FALLBACK:
        el = ds.get(kw)
        val = getattr(el, "value", el)
        if key not in out and val and vendor.startswith(maker):
            out[key] = str(val).strip()
    it = ds.get("ImageType")
    if it:
        out["ImageType"] = [str(x) for x in it]
    t = ds.get("AcquisitionTime") or str(ds.get("AcquisitionDateTime") or "")[8:]
    if t:
        out["AcquisitionTime"] = _bids_time(str(t))
    return out


def _bids_time(t: str) -> str:
    t = t.strip()
    hh, mm, ss = t[0:2], t[2:4] or "00", t[4:6] or "00"
    frac = t[7:] if len(t) > 6 and t[6] == "." else ""
    return f"{hh}:{mm}:{ss}.{(frac + '000000')[:6]}"


def _axis_code(vec, affine_lps) -> str:
    """i/j/k (with "-") of the written axis closest to the patient-space vector ``vec``."""
    axes = np.asarray(affine_lps, float)[:3, :3]
    comp = (axes / np.linalg.norm(axes, axis=0)).T @ np.asarray(vec, float)
    k = int(np.argmax(np.abs(comp)))
    return "ijk"[k] + ("" if comp[k] > 0 else "-")


def phase_keys(ds, first, affine_lps) -> dict:
    """PhaseEncodingDirection (only with a known polarity), EffectiveEchoSpacing and
    TotalReadoutTime.  A positive polarity runs along +column direction of the DICOM image for
    ``COL`` (+row direction for ``ROW``); the vector is then named on the written axes."""
    axis = str(ds.get("InPlanePhaseEncodingDirection") or _enhanced(
        ds, "MRFOVGeometrySequence", "InPlanePhaseEncodingDirection") or "")
    pe = phase_encoding(ds, first.frame, axis)
    out: dict = {}
    if pe is None:
        return out
    iop = np.asarray(first.iop, float)
    if pe.positive is not None:
        vec = (iop[3:] if pe.axis == "COL" else iop[:3]) * (1 if pe.positive else -1)
        out["PhaseEncodingDirection"] = _axis_code(vec, affine_lps)
    recon_pe = first.rows if pe.axis == "COL" else first.columns
    bw = phase_bandwidth(ds, first.frame)
    ees = 1.0 / (bw[0] * recon_pe) if bw else ge_echo_spacing(ds)
    if ees:
        out["EffectiveEchoSpacing"] = round(ees, 9)
        out["TotalReadoutTime"] = round(ees * (recon_pe - 1), 9)
    return out


def slice_timing_key(plans: list, read) -> Optional[list]:
    """SliceTiming (s, written slice order) of a volume; for a 4D set the first volume's,
    unless the second disagrees by more than 10 ms (Siemens XA60 stores wrong times in the
    first volume, as the dcm_qa_xa60 README documents; UIH times jitter by ~1 ms): then the
    second's."""
    rel = []
    for vp in plans[:2]:
        raw = raw_slice_times(vp.slices, read)
        if raw is None:
            return None if not rel else rel[0]
        t0 = min(raw[0])
        rel.append([round(t - t0, 6) for t in raw[0]])
    if len(rel) == 2 and max(abs(a - b) for a, b in zip(*rel)) > 1e-2:
        return rel[1]
    return rel[0]


def bids_keys(plans: list, affine_lps) -> dict:
    """The BIDS keys of a volume (``plans``: its plan, or the plans of a 4D set in order)."""
    import pydicom
    from .. import __version__
    cache: dict = {}

    def read(path):
        if path not in cache:
            cache[path] = pydicom.dcmread(path, stop_before_pixels=True)
        return cache[path]

    first = plans[0].slices[0]
    ds = read(first.path)
    out = plain_keys(ds)
    # values that differ between the volumes of one file (echoes, frame types): this volume's
    if first.echo_time is not None:
        out["EchoTime"] = round(first.echo_time / 1000.0, 9)
    if first.number_of_frames > 1 and first.image_type:
        out["ImageType"] = list(first.image_type)
    out.update(phase_keys(ds, first, affine_lps))
    st = slice_timing_key(plans, read)
    if st is not None:
        out["SliceTiming"] = st
    mb = multiband_factor(ds, first.frame)
    if mb and mb > 1:
        out["MultibandAccelerationFactor"] = mb
    out["ConversionSoftware"] = "dicomrecon"
    out["ConversionSoftwareVersion"] = __version__
    return out
