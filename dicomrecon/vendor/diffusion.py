"""Diffusion b-value and gradient direction of one image, from whichever tags its vendor uses.

Sources, tried in this order (the first with a b-value wins; its tag names go into
:attr:`Diffusion.source`):

==========  =====================================================  ===========================
source      tags                                                   direction frame
==========  =====================================================  ===========================
standard    (0018,9087) b-value, (0018,9089) orientation (also     patient (LPS)
            from the enhanced-MR MRDiffusionSequence per frame)
Siemens     (0019,100C) B_value, (0019,100E)                       patient (LPS)
            DiffusionGradientDirection (the CSA values' DICOM copy)
GE          (0043,1039) first value (values above 1e9 carry a      image (see
            1e9 flag, removed), (0019,10BB/BC/BD) direction        :func:`image_to_patient`);
                                                                   needs (0018,1312)
Philips     (2001,1003) b-value, (2005,10B0/B1/B2) RL/AP/FH        patient (LPS)
UIH         (0065,1009) b-value, (0065,1037) direction             image
Canon       (0018,9087) b-value, ImageComments (0020,4000)         image, as GE
            ``b=1500(x,y,z)``
==========  =====================================================  ===========================

A direction in the image frame (GE, Canon) is turned into patient coordinates with the image's
orientation and (0018,1312) In-plane Phase Encoding Direction (:func:`image_to_patient`).
Without (0018,1312) the frame cannot be known: the direction is kept only as a split key and no
bvec is written (the sidecar says why).

A non-zero b-value with a zero (or missing) vector, or an ImageType / DiffusionDirectionality
that says TRACE, ISOTROPIC or ADC, is a derived *trace* image: it is labelled ``trace`` and
never merged into a 4D diffusion volume.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

#: Private tags read from each header (keyword -> (tag, VR, name)), beside the standard ones in
#: header_model.TAG_TABLE.  Element numbers are those of the vendors' usual private-creator
#: blocks; each is used only when (0008,0070) Manufacturer names that vendor.
PRIVATE_TAGS = {
    "InPlanePhaseEncodingDirection": (0x00181312, "CS", "In-plane Phase Encoding Direction"),
    "RepetitionTime": (0x00180080, "DS", "Repetition Time"),
    "DiffusionDirectionality": (0x00189075, "CS", "Diffusion Directionality"),
    "GE_BValue": (0x00431039, "IS", "GE Slop_int_6..9 (b-value)"),
    "GE_DiffusionX": (0x001910BB, "DS", "GE user data 20 (gradient along frequency)"),
    "GE_DiffusionY": (0x001910BC, "DS", "GE user data 21 (gradient along phase)"),
    "GE_DiffusionZ": (0x001910BD, "DS", "GE user data 22 (gradient along slice)"),
    "Philips_BValue": (0x20011003, "FL", "Philips Diffusion B-Factor"),
    "Philips_DiffusionRL": (0x200510B0, "FL", "Philips Diffusion Direction RL"),
    "Philips_DiffusionAP": (0x200510B1, "FL", "Philips Diffusion Direction AP"),
    "Philips_DiffusionFH": (0x200510B2, "FL", "Philips Diffusion Direction FH"),
    "Siemens_BValue": (0x0019100C, "IS", "Siemens B_value"),
    "Siemens_DiffusionDirection": (0x0019100E, "FD", "Siemens DiffusionGradientDirection"),
    "UIH_BValue": (0x00651009, "FD", "UIH b-value"),
    "UIH_DiffusionDirection": (0x00651037, "FD", "UIH diffusion gradient direction"),
}

#: Below this b-value (s/mm²) a zero vector is an ordinary b = 0 image (UIH stores b=1.25).
TRACE_MIN_B = 5.0
_TRACE_WORDS = {"TRACEW", "TRACE", "ISOTROPIC", "ADC", "EADC", "FA"}
_CANON = re.compile(r"b\s*=\s*([-+0-9.eE]+)\s*\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,"
                    r"\s*([-+0-9.eE]+)\s*\)")


@dataclass(frozen=True)
class Diffusion:
    """One image's diffusion encoding.

    ``direction`` is a unit vector in patient LPS coordinates, or None (b = 0, a trace image,
    or a frame that cannot be determined: see ``note``); ``raw`` is the vector as stored;
    ``frame`` is "patient" or "image" (how ``raw`` is expressed); ``source`` names the tags.
    """

    b: float
    direction: Optional[tuple]
    raw: Optional[tuple]
    frame: str
    source: str
    trace: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return {"b_value": self.b, "direction_lps": None if self.direction is None else
                list(self.direction), "raw": None if self.raw is None else list(self.raw),
                "frame": self.frame, "source": self.source, "trace": self.trace,
                **({"note": self.note} if self.note else {})}


def _floats(v, n: int) -> Optional[tuple]:
    if v is None or isinstance(v, bool):
        return None
    vals = v if isinstance(v, (list, tuple)) else [v]
    try:
        out = tuple(float(x) for x in vals)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _first(v) -> Optional[float]:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


def _vendor(manufacturer: str) -> str:
    m = (manufacturer or "").upper()
    for key, name in (("SIEMENS", "Siemens"), ("GE ", "GE"), ("GE MEDICAL", "GE"),
                      ("PHILIPS", "Philips"), ("UIH", "UIH"), ("CANON", "Canon"),
                      ("TOSHIBA", "Canon")):
        if m.startswith(key) or key in m:
            return name
    return m.strip().title() if m.strip() else ""


def ge_bvalue(value) -> Optional[float]:
    """GE (0043,1039) first value: b in s/mm², with GE's 1e9 flag (set on some software
    versions) removed.

    >>> ge_bvalue([1000000700, 8, 0, 0]), ge_bvalue([1000, 8, 0, 0])
    (700.0, 1000.0)
    """
    b = _first(value)
    if b is None:
        return None
    while b >= 1e9:
        b -= 1e9
    return b


def canon_comment(text) -> Optional[tuple]:
    """(b, (x, y, z)) from a Canon ImageComments value such as ``b=1500(0.5,0.2,-0.8)``."""
    m = _CANON.search(str(text or ""))
    if not m:
        return None
    return float(m.group(1)), tuple(float(m.group(i)) for i in (2, 3, 4))


def _raw_sources(values: dict, vendor: str) -> list:
    """Candidate (b, raw vector, frame, source) in priority order."""
    out = []
    b_std = _first(values.get("DiffusionBValue"))
    if b_std is not None:
        out.append((b_std, _floats(values.get("DiffusionGradientOrientation"), 3), "patient",
                    "(0018,9087)/(0018,9089)"))
    if vendor == "Siemens":
        out.append((_first(values.get("Siemens_BValue")),
                    _floats(values.get("Siemens_DiffusionDirection"), 3), "patient",
                    "Siemens (0019,100C)/(0019,100E)"))
    elif vendor == "GE":
        vec = tuple(_first(values.get(k)) for k in ("GE_DiffusionX", "GE_DiffusionY",
                                                    "GE_DiffusionZ"))
        out.append((ge_bvalue(values.get("GE_BValue")), None if None in vec else vec,
                    "image", "GE (0043,1039)/(0019,10BB..10BD)"))
    elif vendor == "Philips":
        vec = tuple(_first(values.get(k)) for k in ("Philips_DiffusionRL", "Philips_DiffusionAP",
                                                    "Philips_DiffusionFH"))
        out.append((_first(values.get("Philips_BValue")), None if None in vec else vec,
                    "patient", "Philips (2001,1003)/(2005,10B0..10B2)"))
    elif vendor == "UIH":
        out.append((_first(values.get("UIH_BValue")),
                    _floats(values.get("UIH_DiffusionDirection"), 3), "image",
                    "UIH (0065,1009)/(0065,1037)"))
    elif vendor == "Canon":
        parsed = canon_comment(values.get("ImageComments"))
        if parsed:
            out.append((b_std if b_std is not None else parsed[0], parsed[1], "image",
                        ("(0018,9087)" if b_std is not None else "Canon") +
                        " + ImageComments (0020,4000) 'b=(x,y,z)'"))
    out = [c for c in out if c[0] is not None]
    # the standard tags win, but a vendor direction fills a standard b-value without one
    if len(out) > 1 and out[0][1] is None and out[1][1] is not None:
        out = out[1:]
    return out


def image_to_patient(raw, iop, phase_rc: str, vendor: str = "GE") -> Optional[tuple]:
    """A GE or Canon gradient stored in the image frame, as a patient LPS unit vector (its
    sign is immaterial: a gradient and its opposite give the same diffusion weighting).

    In the basis (row, column, normal = cross(row, column)) of ImageOrientationPatient the
    stored (x, y, z) become, for axial and sagittal slices:

    * GE, phase along columns (``COL``): (x, y, -z); along rows (``ROW``): (y, -x, -z);
    * Canon ``COL``: (y, x, -z) (Canon ``ROW``: not known, no direction);
    * UIH (0065,1037): (x, y, z), whatever the phase direction;
    * coronal slices negate the column component (dcm2niix's per-orientation flips).

    These are dcm2niix's geCorrectBvecs rules (after Xiangrui Li's dicm2nii) written in patient
    space, checked against dcm2niix on the corpus (Canon DWI; GE DWI with (0018,1312) set).
    """
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    normal = (row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
              row[0] * col[1] - row[1] * col[0])
    x, y, z = raw
    if vendor == "UIH":  # along row, column and normal, whatever the phase direction
        return _unit(tuple(x * row[i] + y * col[i] + z * normal[i] for i in range(3)))
    if phase_rc not in ("ROW", "COL") or (vendor == "Canon" and phase_rc == "ROW"):
        return None
    a, b = ((y, x) if vendor == "Canon" else (x, y) if phase_rc == "COL" else (y, -x))
    if max(range(3), key=lambda i: abs(normal[i])) == 1:  # coronal
        b = -b
    return _unit(tuple(a * row[i] + b * col[i] - z * normal[i] for i in range(3)))


def _unit(v) -> Optional[tuple]:
    n = math.sqrt(sum(x * x for x in v))
    return None if n < 1e-6 else tuple(x / n for x in v)


def diffusion_of(values: dict, manufacturer: str, image_type: tuple, iop) -> Optional[Diffusion]:
    """The :class:`Diffusion` of one image from its header values, or None if it has none."""
    vendor = _vendor(manufacturer)
    cands = _raw_sources(values, vendor)
    if not cands:
        return None
    b, raw, frame, source = cands[0]
    words = {str(t).upper() for t in image_type} | {
        str(values.get("DiffusionDirectionality") or "").upper()}
    zero = raw is None or _unit(raw) is None
    trace = b > TRACE_MIN_B and (zero or bool(words & _TRACE_WORDS))
    note, direction = "", None
    if not zero and not trace and b > 0:
        if frame == "patient":
            direction = _unit(raw)
        else:
            phase = str(values.get("InPlanePhaseEncodingDirection") or "").upper()
            direction = image_to_patient(raw, iop, phase, vendor)
            if direction is None:
                note = ("the gradient is stored along frequency/phase/slice, and without a "
                        f"(0018,1312) 'In-plane Phase Encoding Direction' (value '{phase}') "
                        "which image axis is which is unknown: no bvec is written")
    return Diffusion(float(b), direction, raw, frame, source, trace, note)


def label_diffusion(h, values: dict) -> None:
    """Set ``h.diffusion_bvalue`` / ``h.diffusion_direction`` (the discovery split keys) and
    ``h.extra['diffusion']`` from the vendor's tags, so that every vendor's DWI splits by
    b-value and direction.  A direction in an unknown frame still splits (as stored)."""
    d = diffusion_of(values, h.manufacturer, h.image_type, h.iop)
    if d is None:
        return
    h.extra["diffusion"] = d
    h.diffusion_bvalue = d.b
    if d.trace:
        h.diffusion_direction = None
        h.extra["diffusion_trace"] = "TRACE"
    else:
        vec = d.direction if d.direction is not None else (d.raw if d.b > 0 else None)
        h.diffusion_direction = None if vec is None or _unit(vec) is None else \
            tuple(round(x, 6) for x in vec)
