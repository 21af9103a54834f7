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
SequenceName                       (0018,0024) (enhanced: PulseSequenceName)
EchoTime                           (0018,0081) / EffectiveEchoTime         s (from ms)
RepetitionTime                     (0018,0080)                             s (from ms)
InversionTime                      (0018,0082)                             s (from ms)
FlipAngle                          (0018,1314)                             degrees
SliceThickness                     (0018,0050)                             mm
SpacingBetweenSlices               (0018,0088)                             mm
EchoNumber                         (0018,0086)
AcquisitionTime                    (0008,0032) as HH:MM:SS.ffffff
InPlanePhaseEncodingDirectionDICOM (0018,1312)
PhaseEncodingDirection             (0018,1312) + Siemens CSA               i/j/k, sign
                                   PhaseEncodingDirectionPositive
SliceTiming                        Siemens CSA MosaicRefAcqTimes (ms);     s
                                   enhanced MR FrameAcquisitionDateTime
MultibandAccelerationFactor        Siemens XA (0018,9155) 'Parallel
                                   Reduction Factor out-of-plane'
ConversionSoftware(Version)        dicomrecon
=================================  ======================================  ==============
"""

from __future__ import annotations

import datetime
from typing import Optional

import numpy as np

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
    it = ds.get("ImageType")
    if it:
        out["ImageType"] = [str(x) for x in it]
    t = ds.get("AcquisitionTime")
    if t:
        out["AcquisitionTime"] = _bids_time(str(t))
    mb = _enhanced(ds, "MRModifierSequence", "ParallelReductionFactorOutOfPlane")
    if mb is not None and float(mb) > 1:
        out["MultibandAccelerationFactor"] = int(float(mb))
    return out


def _bids_time(t: str) -> str:
    t = t.strip()
    hh, mm, ss = t[0:2], t[2:4] or "00", t[4:6] or "00"
    frac = t[7:] if len(t) > 6 and t[6] == "." else ""
    return f"{hh}:{mm}:{ss}.{(frac + '000000')[:6]}"


def _csa(ds) -> dict:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader
        csa = csareader.get_csa_header(ds, "image")
        tags = csa["tags"] if csa else {}
        out = {k: tags[k]["items"] for k in ("MosaicRefAcqTimes", "PhaseEncodingDirectionPositive")
               if k in tags and tags[k]["items"]}
        if "PhaseEncodingDirectionPositive" in out:
            out["PhaseEncodingDirectionPositive"] = out["PhaseEncodingDirectionPositive"][0]
        return out
    except Exception:  # no or damaged CSA header: no CSA-derived keys
        return {}


def phase_encoding_direction(ds, csa: dict, affine_lps) -> Optional[str]:
    """i/j/k with sign relative to the written axes, from (0018,1312) and the Siemens CSA
    PhaseEncodingDirectionPositive polarity; None when either is unknown.

    Siemens' "positive" phase direction runs along +column index for ``COL`` (and +row index
    for ``ROW``) of the DICOM image read as stored, the convention dcm2niix documents; the
    patient-space vector is then expressed on the written image's axes.
    """
    rc = str(ds.get("InPlanePhaseEncodingDirection") or _enhanced(
        ds, "MRFOVGeometrySequence", "InPlanePhaseEncodingDirection") or "").upper()
    pos = csa.get("PhaseEncodingDirectionPositive")
    iop = ds.get("ImageOrientationPatient") or _enhanced(
        ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    if rc not in ("ROW", "COL") or pos is None or iop is None:
        return None
    iop = np.asarray([float(x) for x in iop])
    vec = (iop[3:] if rc == "COL" else iop[:3]) * (1 if int(pos) == 1 else -1)
    axes = np.asarray(affine_lps, float)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    comp = axes.T @ vec
    k = int(np.argmax(np.abs(comp)))
    return "ijk"[k] + ("" if comp[k] > 0 else "-")


def slice_timing(ds, csa: dict, slice_order: list) -> Optional[list]:
    """Seconds from the start of the volume, one per written slice (z order)."""
    times = csa.get("MosaicRefAcqTimes")
    if times is not None and len(times) >= len(slice_order):
        return [round(float(times[k]) / 1000.0, 6) for k in slice_order]
    return None


def enhanced_slice_timing(frames: list) -> Optional[list]:
    """From FrameAcquisitionDateTime of the frames of one volume, in written slice order.

    Not used yet: on Siemens XA30 it differs from dcm2niix's SliceTiming by up to 2.5 ms
    (beyond the 1 ms the tests allow), so no SliceTiming is written for enhanced files."""
    stamps = []
    for dt in frames:
        if not dt:
            return None
        s = str(dt)
        try:
            base = datetime.datetime.strptime(s[:14], "%Y%m%d%H%M%S")
        except ValueError:
            return None
        frac = float("0" + s[14:]) if len(s) > 14 and s[14] == "." else 0.0
        stamps.append(base.timestamp() + frac)
    t0 = min(stamps)
    return [round(t - t0, 6) for t in stamps]


def bids_keys(plan, affine_lps) -> dict:
    """The BIDS keys of a volume plan (its first image's tags, and each slice's timing)."""
    import pydicom
    from .. import __version__
    first = plan.slices[0]
    ds = pydicom.dcmread(first.path, stop_before_pixels=True)
    out = plain_keys(ds)
    csa = _csa(ds) if "SIEMENS" in (first.manufacturer or "").upper() else {}
    st = slice_timing(ds, csa, [h.frame for h in plan.slices]) if "mosaic" in first.extra \
        and not first.extra.get("uih_vframe") else None
    if False and st is None and first.number_of_frames > 1:  # see enhanced_slice_timing
        per = ds.get("PerFrameFunctionalGroupsSequence") or []
        frames = []
        for h in plan.slices:
            fc = per[h.frame].get("FrameContentSequence") if h.frame < len(per) else None
            frames.append(fc[0].get("FrameAcquisitionDateTime") if fc else None)
        st = enhanced_slice_timing(frames)
    if st is not None:
        out["SliceTiming"] = st
    pe = phase_encoding_direction(ds, csa, affine_lps)
    if pe is None and first.number_of_frames > 1:
        pe = _xa_phase_direction(ds, affine_lps)
    if pe is not None:
        out["PhaseEncodingDirection"] = pe
    out["ConversionSoftware"] = "dicomrecon"
    out["ConversionSoftwareVersion"] = __version__
    return out


def _xa_phase_direction(ds, affine_lps) -> Optional[str]:
    """Siemens XA enhanced: the polarity is (0021,111C) PhaseEncodingDirectionPositive."""
    el = ds.get(0x0021111C)
    if el is None:
        return None
    try:
        pos = int(el.value if not isinstance(el.value, bytes) else
                  int.from_bytes(el.value[:2], "little"))
    except (TypeError, ValueError):
        return None
    return phase_encoding_direction(ds, {"PhaseEncodingDirectionPositive": pos}, affine_lps)
