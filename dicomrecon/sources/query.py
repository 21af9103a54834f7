"""``dicomrecon query``: studies and their series, by QIDO-RS or C-FIND."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from .urls import PacsURL

# DICOM keyword -> (tag for DICOMweb JSON)
TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
        "PatientID": "00100020", "StudyDate": "00080020", "AccessionNumber": "00080050",
        "StudyDescription": "00081030", "ModalitiesInStudy": "00080061",
        "Modality": "00080060", "SeriesNumber": "00200011", "SeriesDescription": "0008103E",
        "NumberOfSeriesRelatedInstances": "00201209"}
STUDY_KEYS = ["StudyInstanceUID", "PatientID", "StudyDate", "AccessionNumber",
              "StudyDescription", "ModalitiesInStudy"]
SERIES_KEYS = ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"]


@dataclass
class Filters:
    patient_id: Optional[str] = None
    study_date: Optional[str] = None      # YYYYMMDD, or a range YYYYMMDD-YYYYMMDD
    modality: Optional[str] = None
    accession: Optional[str] = None


@dataclass
class SeriesRow:
    series_instance_uid: str
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    instances: str = ""


@dataclass
class StudyRow:
    study_instance_uid: str
    patient_id: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: str = ""
    series: list = field(default_factory=list)


def _study_filters(f: Filters) -> dict:
    out = {"PatientID": f.patient_id, "StudyDate": f.study_date,
           "AccessionNumber": f.accession, "ModalitiesInStudy": f.modality}
    return {k: v for k, v in out.items() if v}


def _web_value(row: dict, kw: str) -> str:
    vals = row.get(TAGS[kw], {}).get("Value") or []
    return "\\".join(str(v.get("Alphabetic", v) if isinstance(v, dict) else v) for v in vals)


def _study(get) -> StudyRow:
    return StudyRow(get("StudyInstanceUID"), get("PatientID"), get("StudyDate"),
                    get("AccessionNumber"), get("StudyDescription"), get("ModalitiesInStudy"))


def _series(get) -> SeriesRow:
    return SeriesRow(get("SeriesInstanceUID"), get("Modality"), get("SeriesNumber"),
                     get("SeriesDescription"), get("NumberOfSeriesRelatedInstances"))


def query_dicomweb(url: PacsURL, filters: Filters, opts) -> list:
    from . import dicomweb
    web = dicomweb.client(url, opts)
    sfil = dict(_study_filters(filters), includefield=STUDY_KEYS)
    if url.study_uid:
        sfil["StudyInstanceUID"] = url.study_uid
    studies = []
    for row in dicomweb.search(web, url, "studies", sfil):
        st = _study(lambda kw: _web_value(row, kw))
        surl = PacsURL(url.kind, url.host, url.port, base=url.base,
                       study_uid=st.study_instance_uid)
        ser_fil = {"includefield": SERIES_KEYS}
        if filters.modality:
            ser_fil["Modality"] = filters.modality
        if url.series_uid:
            ser_fil["SeriesInstanceUID"] = url.series_uid
        st.series = [_series(lambda kw: _web_value(r, kw))
                     for r in dicomweb.search(web, surl, "series", ser_fil)]
        studies.append(st)
    return studies


def _dimse_value(ds, kw: str) -> str:
    v = ds.get(kw, "") if ds is not None else ""
    return "\\".join(map(str, v)) if isinstance(v, (list, tuple)) or type(v).__name__ == \
        "MultiValue" else str(v)


def query_dimse(url: PacsURL, filters: Filters, opts) -> list:
    from pydicom import Dataset
    from . import dimse
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    for kw in STUDY_KEYS:
        setattr(q, kw, "")
    for kw, v in _study_filters(filters).items():
        setattr(q, kw, v)
    if url.study_uid:
        q.StudyInstanceUID = url.study_uid
    studies = []
    for row in dimse.find(url, opts, q, "searching for studies"):
        st = _study(lambda kw: _dimse_value(row, kw))
        s = Dataset()
        s.QueryRetrieveLevel = "SERIES"
        s.StudyInstanceUID = st.study_instance_uid
        for kw in SERIES_KEYS:
            setattr(s, kw, "")
        s.Modality = filters.modality or ""
        s.SeriesInstanceUID = url.series_uid or ""
        st.series = [_series(lambda kw: _dimse_value(r, kw))
                     for r in dimse.find(url, opts, s, f"searching the series of study "
                                         f"{st.study_instance_uid}")]
        studies.append(st)
    return studies


def as_json(studies: list) -> list:
    return [asdict(s) for s in studies]


def table(studies: list) -> str:
    """Studies, each followed by its series, indented."""
    if not studies:
        return "no matching study"
    lines = []
    for st in sorted(studies, key=lambda s: (s.study_date, s.study_instance_uid)):
        lines.append(f"study {st.study_instance_uid}  patient {st.patient_id or '-'}  "
                     f"date {st.study_date or '-'}  accession {st.accession_number or '-'}  "
                     f"{st.modalities or '-'}  {st.study_description}".rstrip())
        for se in sorted(st.series, key=lambda s: (_num(s.series_number),
                                                   s.series_instance_uid)):
            lines.append(f"  series {se.series_number or '-':>5}  {se.modality or '-':<3}  "
                         f"{se.instances or '?':>5} inst  {se.series_instance_uid}  "
                         f"{se.series_description}".rstrip())
    return "\n".join(lines)


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")
