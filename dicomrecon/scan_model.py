"""What a scan finds: the groups, series and damaged images that :mod:`dicomrecon.discovery`
returns (as :mod:`dicomrecon.header_model` says what a header is).

Below discovery, copies and grouping, which all build or fill these objects; importable from
:mod:`dicomrecon.discovery` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import geometry as geo
from .errors import InputError
from .geometry import ERROR
from .header_model import SliceHeader


@dataclass
class Group:
    """Slices of one series that share orientation, matrix, spacing and pixel format."""

    series_uid: str
    index: int                      # 1-based within the series
    slices: list                    # SliceHeader, sorted along the normal once analysed
    split_keys: dict                # what distinguishes this group from its siblings
    geometry: Optional[geo.StackGeometry] = None
    findings: list = field(default_factory=list)
    family: int = 0                 # groups split from one stack by a repeat key share this
    repeat_key: Optional[str] = None  # the key that split them (EchoTime, TemporalPosition...)
    pixels: dict = field(default_factory=dict, repr=False)  # {instance_key: stored frame} read
    #: by the duplicate check (copies sharing a SOPInstanceUID: resolve_copies), not read again
    damaged: list = field(default_factory=list)  # [(path, reason)] of its slices lost to damage
    tolerances: geo.Tolerances = geo.DEFAULT_TOLERANCES  # what its geometry was checked with
    #: what must outlive the group for its files to exist (api.scan of pydicom Datasets: the
    #: temporary folder they were written to); None for files the caller owns
    keepalive: object = field(default=None, repr=False, compare=False)

    # --- derived -----------------------------------------------------------------------
    @property
    def first(self) -> SliceHeader:
        return self.slices[0]

    @property
    def refused(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    @property
    def reasons(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def label(self) -> str:
        n = self.first.series_number
        return f"{n if n is not None else '?'}.{self.index}"

    @property
    def shape_xyz(self) -> tuple:
        return (self.first.columns, self.first.rows, len(self.slices))

    def describe_orientation(self) -> str:
        if self.geometry is None or self.geometry.orientation is None:
            return "none"
        n = self.geometry.orientation.normal
        axis = ["sagittal", "coronal", "axial"][int(np.argmax(np.abs(n)))]
        ob = self.geometry.obliquity_deg
        return axis if ob < 0.5 else f"oblique {axis} ({ob:.1f} deg)"


@dataclass
class Series:
    uid: str
    groups: list

    @property
    def first(self) -> SliceHeader:
        return self.groups[0].first

    @property
    def number(self):
        return self.first.series_number

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def modality(self) -> str:
        return self.first.modality


@dataclass
class ScanResult:
    root: str
    series: list
    skipped: list                   # [(path, reason)]
    n_files: int
    keepalive: object = field(default=None, repr=False, compare=False)  # as Group.keepalive

    @property
    def groups(self) -> list:
        return [g for s in self.series for g in s.groups]

    def find_group(self, label: str) -> Group:
        for g in self.groups:
            if g.label == label:
                return g
        raise InputError(f"no group '{label}' in {self.root}; groups are: "
                         + ", ".join(g.label for g in self.groups))


@dataclass
class Damage:
    """A DICOM image lost to damage, and what its header said about where it belonged."""

    path: str
    reason: str
    series_uid: Optional[str] = None
    ipp: Optional[tuple] = None
    iop: Optional[tuple] = None
