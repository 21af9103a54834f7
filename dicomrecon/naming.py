"""Output names: the --name template, its tokens, and the suffixes that tell groups apart
(README "Output names").  Shared by convert and batch."""

from __future__ import annotations

import re

#: Default output name: SeriesNumber, then SeriesDescription.  See README "Output names".
DEFAULT_NAME = "%n_%d"
NAME_TOKENS = {
    "%n": "SeriesNumber (0020,0011)",
    "%d": "SeriesDescription (0008,103E)",
    "%m": "Modality (0008,0060)",
    "%p": "ProtocolName (0018,1030)",
    "%i": "PatientID (0010,0020)",
    "%u": "SeriesInstanceUID (0020,000E)",
    "%g": "group index within the series (1, 2, ...)",
}


def clean_name(text: str) -> str:
    """A file-name part: letters (any script, NFC) and digits kept, `.` and `-` kept, anything
    else (spaces, slashes, punctuation, control characters) becomes one `_`."""
    import unicodedata
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[^\w.-]+", "_", text).strip("._-")
    return re.sub(r"_+", "_", text)[:80]


def output_stem(series, group, template: str = DEFAULT_NAME, *,
                group_suffix: bool = True) -> str:
    f = group.first
    values = {
        "%n": "" if f.series_number is None else str(f.series_number),
        "%d": f.series_description, "%m": f.modality, "%p": f.text.protocol_name,
        "%i": f.patient_id, "%u": f.series_instance_uid, "%g": str(group.index),
    }
    name = re.sub(r"%[a-z]", lambda m: values.get(m.group(0), m.group(0)), template)
    name = clean_name(name) or "series"
    if group_suffix and len(series.groups) > 1 and "%g" not in template:
        name += split_suffix(group.split_keys) or f"_g{group.index}"
    return name


#: Name suffix per split key (README "Output names"); keys not listed give ``_g<index>``.
_COMPONENT_SUFFIX = {"P": "_ph", "R": "_real", "I": "_imag", "FIELD_MAP": "_fmap"}


def split_suffix(keys: dict) -> str:
    r"""What tells a group apart from its siblings, as a name suffix (``_e2``, ``_ph``,
    ``_b1000``, ``_trace``, ``_t3``...); empty when no key has a suffix (orientation, matrix,
    gradient direction, repeats...).

    >>> split_suffix({"EchoNumbers": "2", "ImageType": "ORIGINAL\\M"})
    '_e2'
    >>> split_suffix({"ImageType": "ORIGINAL\\P", "DiffusionBValue": 1000.0})
    '_ph_b1000'
    """
    out = ""
    kind = str(keys.get("ImageType") or "").split("\\")
    if "ImageType" in keys:
        out += "".join(_COMPONENT_SUFFIX[k] for k in kind[1:] if k in _COMPONENT_SUFFIX)
        out += "_loc" if "LOCALIZER" in kind else ""
        out += "_derived" if kind and kind[0] == "DERIVED" else ""
    if keys.get("EchoNumbers") is not None:
        out += f"_e{clean_name(str(keys['EchoNumbers']))}"
    elif keys.get("EchoTime") is not None:
        out += f"_te{float(keys['EchoTime']):g}"
    if keys.get("DiffusionTrace"):
        out += "_trace"
    if keys.get("DiffusionBValue") is not None:
        out += f"_b{float(keys['DiffusionBValue']):g}"
    for key, tag in (("TemporalPositionIdentifier", "_t"), ("TriggerTime", "_tt"),
                     ("AcquisitionNumber", "_a")):
        if keys.get(key) is not None:
            out += f"{tag}{keys[key]:g}" if isinstance(keys[key], float) else f"{tag}{keys[key]}"
    return out


class UniqueNames:
    """Unique output stems: a repeated stem gets _2, _3, ..."""

    def __init__(self):
        self.used: set = set()

    def take(self, stem: str) -> str:
        base, k = stem, 2
        while stem in self.used:
            stem, k = f"{base}_{k}", k + 1
        self.used.add(stem)
        return stem


__all__ = ["DEFAULT_NAME", "NAME_TOKENS", "clean_name", "output_stem", "split_suffix",
           "UniqueNames"]
