"""The Python API: scan DICOM, read one volume (or every volume) as numpy + affine or SimpleITK.

A *source* is any of:

* a folder or file path (``str`` or ``os.PathLike``), searched recursively;
* a list of file paths (one series, or several: they are grouped as a folder would be);
* a list of ``pydicom.Dataset`` objects, as a network receiver, an anonymiser or highdicom
  hands them over (they are written to a private temporary folder, which lives as long as the
  scan result, groups and volumes made from it, because pixels are decoded from files);
* a :class:`~dicomrecon.discovery.Group` from :func:`scan` (``read``/``read_volume`` only).

``group="1301.2"`` picks one group by the label that ``dicomrecon scan`` prints (series number,
then group index), which also tells apart echoes or magnitude/phase images of one series.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence, Union

from .discovery import Group, ScanResult
from .discovery import scan as _scan
from .discovery import scan_files as _scan_files
from .errors import AmbiguousInputError, InputError, NoDicomError, RefusedError
from .plan import DEFAULT_POLICY, Policy, plan_group
from .volume import Volume

PathLike = Union[str, os.PathLike]
Source = Union[PathLike, Sequence[PathLike], Sequence["pydicom.Dataset"], Group]  # noqa: F821


def scan(source, *, series_uid: Optional[str] = None, policy: Optional[Policy] = None,
         engine: Optional[str] = None) -> ScanResult:
    """Read the headers of ``source`` (a path, a list of paths or a list of datasets): its
    series, groups (with geometry findings) and skipped files.  The geometry is checked with
    ``policy.tolerances`` (default: :data:`~dicomrecon.geometry.DEFAULT_TOLERANCES`); plan and
    read the groups with the same policy.

    ``engine`` (``"auto"`` or ``"itk"``; default ``policy.engine``) decodes the few files that
    may be copies of one image, to tell a copy from a conflict; it never changes a result."""
    from .decode import check_engine
    policy = _with_engine(policy, engine)
    tol, engine = policy.tolerances, policy.engine
    check_engine(engine)
    if isinstance(source, (str, os.PathLike)):
        return _scan(os.fspath(source), series_uid=series_uid, tol=tol, engine=engine)
    items = list(source)
    if not items:
        raise InputError("an empty list holds no DICOM file")
    if all(isinstance(x, (str, os.PathLike)) for x in items):
        files = [os.fspath(x) for x in items]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise InputError(f"{missing[0]}: no such file ({len(missing)} of {len(files)} "
                             "listed file(s) missing)")
        root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
        return _scan_files(files, root=root, series_uid=series_uid, tol=tol, engine=engine)
    from pydicom import Dataset
    if all(isinstance(x, Dataset) for x in items):
        folder = _DatasetFolder(items)
        result = _scan(folder.path, series_uid=series_uid, tol=tol, engine=engine)
        result.keepalive = folder  # the files live as long as the result and its groups
        for g in result.groups:
            g.keepalive = folder
        return result
    raise TypeError("a source is a path, a list of paths, a list of pydicom Datasets or a "
                    f"Group; got a list of {sorted({type(x).__name__ for x in items})}")


class _DatasetFolder:
    """A private temporary folder holding datasets as Part 10 files; removed when collected."""

    def __init__(self, datasets):
        self._tmp = tempfile.TemporaryDirectory(prefix="dicomrecon-datasets-")
        self.path = self._tmp.name
        for i, ds in enumerate(datasets):
            name = os.path.join(self.path, f"{i:06d}.dcm")
            try:
                _write_dataset(ds, name)
            except Exception as exc:  # pydicom raises many types for unwritable datasets
                raise InputError(f"dataset {i} (SOPInstanceUID "
                                 f"{getattr(ds, 'SOPInstanceUID', '?')}) cannot be written as a "
                                 f"DICOM file: {type(exc).__name__}: {exc}") from None


def _write_dataset(ds, path: str) -> None:
    """Part 10 file of ``ds``; a dataset without file meta is written Explicit VR LE."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        import copy
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian
        ds = copy.copy(ds)
        ds.file_meta = FileMetaDataset(meta or {})
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _pick(groups: list, where: str, group: Optional[str]) -> Group:
    if group is not None:
        for g in groups:
            if g.label == group:
                return g
        raise InputError(f"{where}: no group '{group}'; groups are: "
                         + ", ".join(g.label for g in groups))
    if len(groups) == 1:
        return groups[0]
    listing = "; ".join(f"{g.label} {g.first.series_description!r} "
                        f"{'x'.join(map(str, g.shape_xyz))}" for g in groups)
    raise AmbiguousInputError(f"{where} contains {len(groups)} volumes: {listing}",
                              hint="pass group='LABEL' (one of those), series_uid=, or use "
                                   "dicomrecon.read_volumes()")


def _one_group(source, series_uid: Optional[str], group: Optional[str],
               policy: Optional[Policy] = None) -> Group:
    if isinstance(source, Group):
        return source
    result = scan(source, series_uid=series_uid, policy=policy)
    where = os.fspath(source) if isinstance(source, (str, os.PathLike)) else \
        f"the {len(list(source))} given item(s)"
    if not result.groups:
        raise NoDicomError(f"{where}: no DICOM image found ({len(result.skipped)} file(s) "
                           "skipped)")
    return _pick(result.groups, where, group)


def _with_engine(policy: Optional[Policy], engine: Optional[str]) -> Policy:
    """``policy`` (default: :data:`DEFAULT_POLICY`) with ``engine`` when one is given."""
    import dataclasses
    policy = policy or DEFAULT_POLICY
    return policy if engine is None else dataclasses.replace(policy, engine=engine)


def read_volume(source, *, series_uid: Optional[str] = None, group: Optional[str] = None,
                policy: Optional[Policy] = None, engine: Optional[str] = None) -> Volume:
    """One volume as numpy ``(nz, ny, nx)`` plus a ``(4, 4)`` index (x, y, z) -> LPS affine.

    ``source``: see the module docstring.  Raises
    :class:`~dicomrecon.errors.RefusedError` (with ``.findings``) for a group that cannot be
    reconstructed correctly under ``policy``, and
    :class:`~dicomrecon.errors.AmbiguousInputError` when the source holds several groups and
    neither ``group=`` nor ``series_uid=`` picks one.  ``engine``: ``"auto"`` (default: the
    fastest verified decoder) or ``"itk"`` (SimpleITK ``ImageSeriesReader`` for every file);
    both give the same voxels.
    """
    from .conversion import load_group
    policy = _with_engine(policy, engine)
    return load_group(_one_group(source, series_uid, group, policy), policy=policy)


def read_volumes(source, *, policy: Optional[Policy] = None,
                 engine: Optional[str] = None) -> list:
    """Every volume of ``source`` (or of a :class:`ScanResult`), as the CLI would write them.

    Each volume knows its group: ``vol.label`` is the label ``dicomrecon scan`` prints
    ("1301.2", "1301.2p1" for a part of a split group, "7.1+7.2+..." for a 4D volume).  With
    ``Policy(merge_4d=True)``, repeats of one grid that ``convert --4d`` writes as one 4D file
    come back as one 4D Volume, array (nt, nz, ny, nx), with the 4th axis key and values in
    ``vol.provenance.fourth_axis``.

    Refused groups are left out; ``plan_group(group, policy).refusals`` says why.  A volume
    whose pixels cannot be decoded (or give non-finite values) is left out too, with a
    ``RuntimeWarning`` naming the file, tag and reason; the others are still read.
    """
    import warnings

    from .conversion import load_4d, load_plan
    from .fourth_axis import merge_sets
    policy = _with_engine(policy, engine)
    result = source if isinstance(source, ScanResult) else scan(source, policy=policy)
    out = []
    for series in result.series:
        plans = [vp for g in series.groups for vp in plan_group(g, policy).volumes]
        sets = {id(s[0]): s for s in merge_sets(plans)} if policy.merge_4d else {}
        merged = {id(vp) for s in sets.values() for vp in s}
        for vp in plans:
            if id(vp) in merged and id(vp) not in sets:
                continue  # read with the first volume of its 4D set
            todo = sets.get(id(vp))
            try:
                out.append(load_4d(todo, policy=policy) if todo else load_plan(vp, policy=policy))
            except RefusedError as exc:  # the per-volume boundary, as in convert
                label = "+".join(p.label for p in todo) if todo else vp.label
                warnings.warn(f"volume {label} refused: {exc}", RuntimeWarning, stacklevel=2)
    return out


def read(source, *, series_uid: Optional[str] = None, group: Optional[str] = None,
         policy: Optional[Policy] = None, engine: Optional[str] = None):
    """One volume as a ``SimpleITK.Image`` in LPS, axes x = column, y = row, z = slice."""
    return read_volume(source, series_uid=series_uid, group=group, policy=policy,
                       engine=engine).to_sitk()


__all__ = ["scan", "read", "read_volume", "read_volumes", "Policy", "Source"]
