"""The Python API: scan a folder, read one volume as a SimpleITK image or numpy + affine."""

from __future__ import annotations

import os
from typing import Optional, Union

from .discovery import Group, ScanResult
from .discovery import scan as _scan
from .errors import AmbiguousInputError, NoDicomError, RefusedError
from .volume import Volume

PathOrGroup = Union[str, os.PathLike, Group]


def scan(path: Union[str, os.PathLike], *, series_uid: Optional[str] = None) -> ScanResult:
    """Read the headers under ``path``: series, groups (with geometry findings), skipped files."""
    return _scan(os.fspath(path), series_uid=series_uid)


def _one_group(source: PathOrGroup, series_uid: Optional[str]) -> Group:
    if isinstance(source, Group):
        return source
    result = scan(source, series_uid=series_uid)
    groups = result.groups
    if not groups:
        raise NoDicomError(f"{os.fspath(source)}: no DICOM image found "
                           f"({len(result.skipped)} file(s) skipped)")
    good = [g for g in groups if not g.refused]
    if len(groups) > 1:
        listing = "; ".join(f"{g.label} {g.first.series_description!r} "
                            f"{'x'.join(map(str, g.shape_xyz))}"
                            + (" (refused)" if g.refused else "") for g in groups)
        raise AmbiguousInputError(
            f"{os.fspath(source)} contains {len(groups)} volumes ({len(good)} reconstructable): "
            f"{listing}", hint="pass one group from dicomrecon.scan(path).groups, or series_uid=")
    return groups[0]


def read_volume(source: PathOrGroup, *, series_uid: Optional[str] = None) -> Volume:
    """One volume as numpy (nz, ny, nx) plus a (4, 4) LPS affine.

    ``source`` is a path holding exactly one volume, or a :class:`Group` from :func:`scan`.
    Raises :class:`~dicomrecon.errors.RefusedError` (with ``.findings``) for a group that cannot
    be reconstructed correctly, and :class:`~dicomrecon.errors.AmbiguousInputError` for a path
    that holds several volumes.
    """
    from .convert import load_group
    return load_group(_one_group(source, series_uid))


def read(source: PathOrGroup, *, series_uid: Optional[str] = None):
    """One volume as a ``SimpleITK.Image`` in LPS, axes x = column, y = row, z = slice."""
    return read_volume(source, series_uid=series_uid).to_sitk()


__all__ = ["scan", "read", "read_volume", "RefusedError"]
