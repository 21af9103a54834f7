"""The Python API: scan a folder, read one volume as a SimpleITK image or numpy + affine."""

from __future__ import annotations

import os
from typing import Optional, Union

from .discovery import Group, ScanResult
from .discovery import scan as _scan
from .errors import AmbiguousInputError, NoDicomError, RefusedError
from .plan import DEFAULT_POLICY, Policy, plan_group
from .volume import Volume

PathOrGroup = Union[str, os.PathLike, Group]


def scan(path: Union[str, os.PathLike], *, series_uid: Optional[str] = None) -> ScanResult:
    """Read the headers under ``path``: series, groups (with geometry findings), skipped files."""
    return _scan(os.fspath(path), series_uid=series_uid)


def _one_group(source: PathOrGroup, series_uid: Optional[str], policy: Policy) -> Group:
    if isinstance(source, Group):
        return source
    result = scan(source, series_uid=series_uid)
    groups = result.groups
    if not groups:
        raise NoDicomError(f"{os.fspath(source)}: no DICOM image found "
                           f"({len(result.skipped)} file(s) skipped)")
    good = [g for g in groups if not plan_group(g, policy).refused]
    if len(groups) > 1:
        listing = "; ".join(f"{g.label} {g.first.series_description!r} "
                            f"{'x'.join(map(str, g.shape_xyz))}"
                            + ("" if g in good else " (refused)") for g in groups)
        raise AmbiguousInputError(
            f"{os.fspath(source)} contains {len(groups)} volumes ({len(good)} reconstructable): "
            f"{listing}", hint="pass one group from dicomrecon.scan(path).groups, or series_uid=")
    return groups[0]


def read_volume(source: PathOrGroup, *, series_uid: Optional[str] = None,
                policy: Optional[Policy] = None) -> Volume:
    """One volume as numpy (nz, ny, nx) plus a (4, 4) LPS affine.

    ``source`` is a path holding exactly one volume, or a :class:`Group` from :func:`scan`.
    Raises :class:`~dicomrecon.errors.RefusedError` (with ``.findings``) for a group that cannot
    be reconstructed correctly, and :class:`~dicomrecon.errors.AmbiguousInputError` for a path
    that holds several volumes.
    """
    from .conversion import load_group
    policy = policy or DEFAULT_POLICY
    return load_group(_one_group(source, series_uid, policy), policy=policy)


def read_volumes(source: Union[str, os.PathLike, ScanResult], *,
                 policy: Optional[Policy] = None) -> list:
    """Every volume under a path (or of a :class:`ScanResult`), as the CLI would write them.

    Refused groups are left out; ``plan_group(group, policy).refusals`` says why.  A volume
    whose pixels cannot be decoded (or give non-finite values) is left out too, with a
    ``RuntimeWarning`` naming the file, tag and reason; the others are still read.
    """
    import warnings

    from .conversion import load_plan
    result = source if isinstance(source, ScanResult) else scan(source)
    policy = policy or DEFAULT_POLICY
    out = []
    for vp in (vp for g in result.groups for vp in plan_group(g, policy).volumes):
        try:
            out.append(load_plan(vp, policy=policy))
        except RefusedError as exc:  # the per-volume boundary, as in convert
            warnings.warn(f"volume {vp.label} refused: {exc}", RuntimeWarning, stacklevel=2)
    return out


def read(source: PathOrGroup, *, series_uid: Optional[str] = None,
         policy: Optional[Policy] = None):
    """One volume as a ``SimpleITK.Image`` in LPS, axes x = column, y = row, z = slice."""
    return read_volume(source, series_uid=series_uid, policy=policy).to_sitk()


__all__ = ["scan", "read", "read_volume", "read_volumes", "Policy", "RefusedError"]
