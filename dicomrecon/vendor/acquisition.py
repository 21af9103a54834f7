"""Acquisition details that vendors keep in private tags: slice times, phase-encoding
polarity, phase bandwidth, multiband factor.  Rules learnt from dcm2niix's sources and the
dcm_qa_* READMEs, checked against dcm2niix's JSON on the corpus (tests/test_bids_sidecar.py).

=======================  ===================================================================
value                    sources
=======================  ===================================================================
slice times              Siemens MOSAIC: CSA image header MosaicRefAcqTimes (ms), per tile;
                         Siemens enhanced (XA): per-frame private item (0021,11FE),
                         (0021,1104) (s); GE: RTIA timer (0021,105E) (s) per file, else
                         TriggerTime (0018,1060) (ms) when it varies within a volume (GE
                         multiphase); UIH VFRAME: AcquisitionDateTime of each (0065,1051) item
phase polarity           Siemens: CSA PhaseEncodingDirectionPositive; XA: (0021,11FE),
                         (0021,111C); GE EPI: (0043,102A) polarity bit and view order
phase bandwidth (Hz/px)  Siemens: (0019,1028) BandwidthPerPixelPhaseEncode; XA: (0021,11FE),
                         (0021,1153)
echo spacing             GE: (0043,102C) effective echo spacing (µs), only when the ASSET
                         factor (0043,1083) is 1 (other factors: not derived)
multiband factor         Siemens: CSA series MrPhoenixProtocol sSliceAcceleration.
                         lMultiBandFactor, CMRR ImageComments "MB<n>"; XA: (0021,11FE),
                         (0021,1156) "p<n> s<m>" (m)
=======================  ===================================================================
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Callable, Optional

XA_FRAME_ITEM = 0x002111FE


@dataclass(frozen=True)
class SliceTiming:
    """Acquisition time of each slice, in seconds from the first, in the given slice order."""

    seconds: tuple
    source: str


@dataclass(frozen=True)
class PhaseEncoding:
    """In-plane phase-encoding axis ("ROW"/"COL") and polarity (None: unknown)."""

    axis: str
    positive: Optional[bool]
    source: str


def _csa_tags(ds, which: str = "image") -> dict:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader
        csa = csareader.get_csa_header(ds, which)
        return csa["tags"] if csa else {}
    except Exception:  # no or damaged CSA header: nothing derived from it
        return {}


def _csa_items(ds, name: str) -> list:
    tag = _csa_tags(ds).get(name)
    return list(tag["items"]) if tag and tag["items"] else []


def xa_item(ds, frame: int):
    """The Siemens XA per-frame private item (0021,11FE) of ``frame`` (else the shared one)."""
    for group in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        items = ds.get(group) or []
        item = items[frame] if group.startswith("Per") and frame < len(items) else (
            items[0] if items and not group.startswith("Per") else None)
        if item is not None and XA_FRAME_ITEM in item and len(item[XA_FRAME_ITEM].value):
            return item[XA_FRAME_ITEM].value[0]
    return None


def _float(v) -> Optional[float]:
    try:
        return None if v is None else float(v.value if hasattr(v, "value") else v)
    except (TypeError, ValueError):
        return None


def _dt_seconds(value) -> Optional[float]:
    s = str(value or "")
    try:
        base = datetime.datetime.strptime(s[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    frac = float("0" + s[14:].split("+")[0].split("-")[0]) if s[14:15] == "." else 0.0
    return base.timestamp() + frac


def raw_slice_times(slices: list, read: Callable) -> Optional[tuple]:
    """(seconds per slice, source) of one volume's slices (SliceHeader, in written order),
    ``read(path)`` giving a pydicom dataset; None when no source has them."""
    first = slices[0]
    if first.modality != "MR":
        return None
    ds = read(first.path)
    vendor = (first.manufacturer or "").upper()
    if first.extra.get("uih_vframe"):
        items = ds[0x00651051].value
        t = [_dt_seconds(items[h.frame].get("AcquisitionDateTime")) for h in slices]
        return (t, "UIH (0065,1051) AcquisitionDateTime") if None not in t else None
    if first.tile is not None:
        times = _csa_items(ds, "MosaicRefAcqTimes")
        if len(times) > max(h.frame for h in slices):
            return [float(times[h.frame]) / 1000.0 for h in slices], "Siemens CSA MosaicRefAcqTimes"
        return None
    if first.number_of_frames > 1:
        t = [_float(getattr(xa_item(ds, h.frame), "get", lambda _: None)(0x00211104))
             for h in slices]
        return (t, "Siemens XA (0021,11FE)/(0021,1104)") if None not in t else None
    if vendor.startswith("GE"):
        return _ge_slice_times(slices, read)
    return None


def _ge_slice_times(slices: list, read: Callable) -> Optional[tuple]:
    rtia = [_float(read(h.path).get(0x0021105E)) for h in slices]
    if None not in rtia and len(set(rtia)) > 1:
        return rtia, "GE RTIA timer (0021,105E)"
    trig = [_float(read(h.path).get("TriggerTime")) for h in slices]
    if None not in trig and len(set(trig)) > 1:
        return [t / 1000.0 for t in trig], "GE TriggerTime (0018,1060)"
    return None


def phase_encoding(ds, frame: int, axis: str) -> Optional[PhaseEncoding]:
    """The phase-encoding axis of (0018,1312) (or the enhanced MRFOVGeometry value) with
    the Siemens polarity when it is recorded."""
    axis = (axis or "").upper()
    if axis not in ("ROW", "COL"):
        return None
    pos = _csa_items(ds, "PhaseEncodingDirectionPositive")
    if pos:
        return PhaseEncoding(axis, int(pos[0]) == 1, "Siemens CSA PhaseEncodingDirectionPositive")
    item = xa_item(ds, frame)
    if item is not None and 0x0021111C in item:
        return PhaseEncoding(axis, int(_float(item[0x0021111C]) or 0) == 1,
                             "Siemens XA (0021,11FE)/(0021,111C)")
    flipped = ge_phase_flipped(ds)
    if flipped is not None:
        return PhaseEncoding(axis, not flipped, "GE (0043,102A) EPI polarity and view order")
    return PhaseEncoding(axis, None, "(0018,1312)")


def ge_phase_flipped(ds) -> Optional[bool]:
    """GE EPI phase-encoding polarity from the binary user-data header (0043,102A): the
    polarity bit (0x0004 of the 16-bit word at 0x30) is inverted by a bottom-up view order
    (value 2 at 0x394; both offsets after the header offset at byte 24, shifted from header
    version 25.002).  True: phase runs against the column direction.  None when the header
    is absent, not EPI or unreadable (dcm2niix's layout, checked on the corpus)."""
    import struct
    el = ds.get(0x0043102A)
    data = getattr(el, "value", None)
    if not isinstance(data, (bytes, bytearray)) or len(data) < 26:
        return None
    try:
        start = struct.unpack_from("<H", data, 24)[0]
        version = struct.unpack_from("<f", data, start)[0]
        hdr, kydir = start, 0x394
        if not 5.0 <= version <= 40.0:
            return None
        if version >= 25.002:
            hdr, kydir = hdr + 0x4C, kydir - 0x8C
        if not struct.unpack_from("<H", data, hdr + 0x3A)[0] & 0x800:  # not EPI
            return None
        flipped = bool(struct.unpack_from("<H", data, hdr + 0x30)[0] & 0x0004)
        if struct.unpack_from("<H", data, hdr + kydir)[0] == 2:  # bottom-up view order
            flipped = not flipped
        return flipped
    except struct.error:
        return None


def phase_bandwidth(ds, frame: int) -> Optional[tuple]:
    """(Hz per pixel along phase, source) of a Siemens image."""
    bw = _float(ds.get(0x00191028))
    if bw:
        return bw, "Siemens (0019,1028) BandwidthPerPixelPhaseEncode"
    item = xa_item(ds, frame)
    bw = _float(item.get(0x00211153)) if item is not None else None
    return (bw, "Siemens XA (0021,11FE)/(0021,1153)") if bw else None


def ge_echo_spacing(ds) -> Optional[float]:
    """GE effective echo spacing (s) when no in-plane acceleration (ASSET 1) applies."""
    es, asset = _float(ds.get(0x0043102C)), ds.get(0x00431083)
    factors = asset.value if asset is not None else None
    first = _float(factors[0] if isinstance(factors, (list, tuple)) or type(
        factors).__name__ == "MultiValue" else factors)
    return es * 1e-6 if es and first == 1.0 else None


def multiband_factor(ds, frame: int) -> Optional[int]:
    item = xa_item(ds, frame)
    if item is not None and 0x00211156 in item:
        m = re.search(r"\bs(\d+)", str(item[0x00211156].value))
        if m:
            return int(m.group(1))
    series = _csa_tags(ds, "series").get("MrPhoenixProtocol")
    text = str(series["items"][0]) if series and series["items"] else ""
    m = re.search(r"sSliceAcceleration\.lMultiBandFactor\s*=\s*(\d+)", text)
    if m and int(m.group(1)) > 1:  # CMRR sequences keep 1 here and say MB<n> in comments
        return int(m.group(1))
    m = re.search(r"\bMB(\d+)\b", str(ds.get("ImageComments") or ""))
    return int(m.group(1)) if m and "SIEMENS" in str(ds.get("Manufacturer", "")).upper() else None
