"""export_series: check the options and the output, load the source, choose the reference, plan
the values and the series, then write it slice by slice into a temporary folder renamed into
place."""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from .. import __version__
from ..affines import SliceGeometry
from ..errors import InputError, OutputError, RefusedError
from ..volume import Volume
from ..writers import (OLD_SUFFIX, TEMP_SUFFIX, is_inside, make_writable_folder,
                       remove_stale_temporaries, temp_prefix)
from . import build
from .common import (MR_IMAGE_STORAGE, SOP_CLASS_NAMES, ExportUsageError, new_uid,
                     slice_geometry)
from .reference import (Reference, identity, reference_from_dicom, reference_from_sidecar,
                        same_grid, slice_sources)
from .sources import Source, load_source
from .values import ValueEncoding, encode_plane, plan_encoding


@dataclass
class ExportResult:
    outdir: str
    files: list                      # written file paths, in InstanceNumber order
    sop_class_uid: str
    modality: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    values: Optional[ValueEncoding]   # None for RGB
    shape_xyz: tuple
    z_reversed: bool
    reference: Optional[str] = None   # "kind path", or None for a standalone series
    source_references: int = 0        # instances with a SourceImageSequence
    notes: list = field(default_factory=list)

    @property
    def sop_class_name(self) -> str:
        return SOP_CLASS_NAMES.get(self.sop_class_uid, self.sop_class_uid)

    @property
    def quantisation_step(self) -> Optional[float]:
        """Value units per stored integer (1 for exact integers)."""
        return None if self.values is None else self.values.step


@dataclass
class _Options:
    """export_series' keyword options, checked."""

    like: object = None
    series_number: Optional[int] = None
    series_description: Optional[str] = None
    patient_name: Optional[str] = None
    patient_id: Optional[str] = None
    modality: Optional[str] = None
    standalone: bool = False
    force: bool = False

    def check(self) -> None:
        if self.like is not None and self.standalone:
            raise ExportUsageError("--like and --standalone contradict each other: pass one")
        _check_text("SeriesDescription", "(0008,103E)", self.series_description)
        _check_text("PatientName", "(0010,0010)", self.patient_name)
        _check_text("PatientID", "(0010,0020)", self.patient_id)
        _check_text("Modality", "(0008,0060)", self.modality, 16)
        if self.series_number is not None and not (0 <= int(self.series_number) <= 2 ** 31 - 1):
            raise ExportUsageError(f"A (0020,0011) 'Series Number' value of "
                                   f"'{self.series_number}' is invalid, it must be an integer "
                                   "from 0 to 2147483647")


def _check_text(keyword: str, tag: str, value: Optional[str], limit: int = 64):
    if value is None:
        return
    if len(value) > limit or "\\" in value or any(ord(c) < 32 for c in value):
        raise ExportUsageError(f"A {tag} '{keyword}' value of '{value}' is invalid, it must be at "
                               f"most {limit} characters with no backslash or control character")


def check_output(outdir: str, inputs: list, force: bool, notes: Optional[list] = None) -> str:
    """Validate ``outdir`` before any work: never an input, never non-empty without force.

    Temporaries a killed export left beside ``outdir`` are removed, each with a line in
    ``notes`` (on stderr without ``notes``).
    """
    outdir = os.path.abspath(os.fspath(outdir))
    for inp in inputs:
        if is_inside(outdir, inp) or is_inside(inp, outdir):
            raise OutputError(f"{outdir}: the output folder is, holds or lies inside the input "
                              f"{inp}; dicomrecon never writes into or replaces its input",
                              hint="choose another -o")
    if os.path.exists(outdir):
        if not os.path.isdir(outdir):
            raise OutputError(f"{outdir}: exists and is not a folder")
        if os.listdir(outdir) and not force:
            raise OutputError(f"{outdir}: the output folder exists and is not empty",
                              hint="choose a new folder, or pass --force to replace it")
    parent, name = os.path.split(outdir)
    make_writable_folder(parent, "parent folder")
    remove_stale_temporaries(parent, name, report=None if notes is None else notes.append)
    return outdir


def _write_atomically(outdir: str, force: bool, write) -> list:
    parent, name = os.path.split(outdir)
    try:
        tmp = tempfile.mkdtemp(prefix=temp_prefix(name), suffix=TEMP_SUFFIX, dir=parent)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot write here ({exc.strerror})")
    try:
        paths = write(tmp)
        os.chmod(tmp, 0o755)
        if os.path.isdir(outdir) and os.listdir(outdir):
            if not force:  # appeared while writing
                raise OutputError(f"{outdir}: the output folder exists and is not empty",
                                  hint="choose a new folder, or pass --force to replace it")
            old = tempfile.mkdtemp(prefix=temp_prefix(name), suffix=OLD_SUFFIX, dir=parent)
            os.rename(outdir, os.path.join(old, name))
            try:
                os.rename(tmp, outdir)
            except OSError:
                os.rename(os.path.join(old, name), outdir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, outdir)  # an empty folder is replaced atomically
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{outdir}: cannot write the series ({exc.strerror or exc})")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths


def _reference(src: Source, opts: _Options, notes: list) -> Optional[Reference]:
    """The reference: ``like``, else the automatic one unless standalone."""
    auto = src.reference
    if opts.like is not None:
        like_path = os.path.abspath(os.fspath(opts.like))
        if not os.path.exists(like_path):
            raise InputError(f"{like_path}: no such file or folder (--like)")
        src.inputs.append(like_path)
        if os.path.isfile(like_path) and like_path.lower().endswith(".json"):
            return reference_from_sidecar(like_path)
        return reference_from_dicom(like_path)
    if auto is not None and opts.standalone:
        notes.append(f"standalone: the reference {auto.path} was not used (--standalone)")
        return None
    if auto is not None:
        notes.append(f"reference: {auto.path} (the sidecar beside the input; --standalone "
                     "ignores it)" if auto.kind == "sidecar" else
                     f"reference: the source series of the input, {auto.path} "
                     "(--standalone ignores it)")
    return auto


def _derivation(what: str, ref: Optional[Reference], enc: Optional[ValueEncoding],
                geom: SliceGeometry) -> str:
    parts = [f"dicomrecon {__version__} export of {os.path.basename(what) or what}"]
    if ref is not None and ref.source_series_uid:
        parts.append(f"source series {ref.source_series_uid}"
                     + (f" ({ref.reconstruction})" if ref.reconstruction else ""))
    if enc is not None:
        parts.append(("values exact, " if enc.exact else f"values quantised, step "
                      f"{enc.step:.6g}, ") + f"stored {enc.stored_dtype}")
    if geom.z_reversed:
        parts.append("slice order reversed (left-handed grid)")
    return "; ".join(parts)[:1024]


def _sop_class(mod: str, enc, rgb: bool, ident, ref, notes: list) -> str:
    has_mr = bool(ident.text("ScanningSequence")) and bool(ident.text("SequenceVariant"))
    sop_class = build.choose_sop_class(mod, rescale=bool(enc and enc.rescale), rgb=rgb,
                                       mr_attributes=has_mr and ref is not None
                                       and ref.modality == "MR")
    if mod == "MR" and sop_class != MR_IMAGE_STORAGE:
        why = ("a colour (RGB) image" if rgb else
               "the values need RescaleSlope/Intercept, which the MR IOD has no module for"
               if enc and enc.rescale else "no reference supplies the MR Image module's "
               "ScanningSequence and SequenceVariant")
        notes.append(f"written as Secondary Capture, not MR Image Storage: {why}")
    return sop_class


def _plan(src: Source, ref: Optional[Reference], opts: _Options, notes: list) -> tuple:
    """(SeriesPlan, per written slice its source instances or None)."""
    if len(src.shape) != 3 and not src.rgb:
        colour = len(src.shape) == 4 and src.shape[3] == 3 and src.dtype == np.uint8
        raise RefusedError(f"the volume has shape {src.shape}; export writes one 3D "
                           "volume (nz, ny, nx) or 8-bit RGB (nz, ny, nx, 3)" +
                           (" marked as colour" if colour else ""),
                           hint="a Volume is RGB only with metadata['rgb'] = True (as "
                           "dicomrecon sets it when it reads colour)" if colour else None)
    geom = slice_geometry(src.affine, src.shape[0])
    # source references, then identity (a DICOM folder's matched series decides it)
    per_slice, preserved = slice_sources(ref, src.shape, src.affine, geom, notes)
    ident = identity(ref)
    mod = (opts.modality or (ref.modality if ref else "") or src.modality or "OT").upper()
    enc = None if src.rgb else plan_encoding(src.slices, ct=mod == "CT")
    sn = opts.series_number if opts.series_number is not None else (
        1000 + ref.source_series_number if ref and ref.source_series_number is not None else 1000)
    description = opts.series_description
    if description is None:
        base = ref.source_series_description if ref else ""
        description = (f"{base} derived" if base else "dicomrecon export")[:64]
    thickness = geom.slice_spacing
    if ref is not None and ref.slice_thickness and ref.reconstruction == "stack" and \
            same_grid(ref, src.shape, src.affine):
        thickness = ref.slice_thickness
    plan = build.SeriesPlan(
        _sop_class(mod, enc, src.rgb, ident, ref, notes), mod, ident, new_uid(), int(sn),
        description, geom, enc, thickness, tuple(src.shape[1:3]),
        _derivation(src.what, ref, enc, geom), ref, preserved, opts.patient_name,
        opts.patient_id, datetime.datetime.now())
    return plan, per_slice


def _write(folder: str, src: Source, plan: build.SeriesPlan, per_slice) -> list:
    """Encode and write one slice at a time (source z ascending; file k = z, or nz-1-z for a
    left-handed grid)."""
    series = build.series_dataset(plan)
    nz = src.shape[0]
    paths = [None] * nz
    for z, plane in enumerate(src.slices()):
        k = nz - 1 - z if plan.geom.z_reversed else z
        stored = plane if plan.enc is None else encode_plane(plan.enc, plane)
        paths[k] = build.write_slice(folder, series, plan, k, stored,
                                     per_slice[k] if per_slice else None)
    return paths


def export_series(source: Union[Volume, str, os.PathLike, object], outdir, *,
                  like=None, series_number: Optional[int] = None,
                  series_description: Optional[str] = None,
                  patient_name: Optional[str] = None, patient_id: Optional[str] = None,
                  modality: Optional[str] = None, standalone: bool = False,
                  force: bool = False) -> ExportResult:
    """Write ``source`` as a derived DICOM series into the folder ``outdir``.

    source : a :class:`Volume`, a ``SimpleITK.Image``, or a path: a .nii / .nii.gz / .nrrd /
        .mha file (read with SimpleITK, in LPS) or a DICOM folder holding one volume
    like : a DICOM folder or a dicomrecon sidecar ``NAME.json`` whose Patient, Study and
        FrameOfReference identity the series keeps.  Without it, the automatic reference is
        used: ``NAME.json`` beside an input ``NAME.nii.gz``, the source series of a DICOM
        folder input or of a Volume read by dicomrecon (``result.notes`` says so).
    standalone : ignore any automatic reference: new Study and FrameOfReference.
    series_number, series_description : defaults: 1000 + the source's SeriesNumber (or 1000),
        and "<source description> derived" (or "dicomrecon export").
    patient_name, patient_id : only without a reference (a reference's patient is kept).
    modality : override the Modality (e.g. "OT" for a label image made from a CT).
    force : replace an existing non-empty ``outdir``.

    Raises :class:`InputError`, :class:`OutputError`, :class:`RefusedError` (sheared grid,
    NaN values, no geometry) and :class:`ExportUsageError`.
    """
    opts = _Options(like, series_number, series_description, patient_name, patient_id,
                    modality, standalone, force)
    opts.check()
    notes: list = []
    if isinstance(source, (str, os.PathLike)):  # fail fast, before reading the volume
        check_output(outdir, [os.fspath(source)], force, notes)
    src = load_source(source)
    ref = _reference(src, opts, notes)
    if ref is not None:
        src.inputs.append(os.path.dirname(ref.first_file))
        if patient_name is not None or patient_id is not None:
            raise ExportUsageError("--patient-name / --patient-id apply only to a standalone "
                                   f"series: the reference ({ref.path}) keeps its patient",
                                   hint="drop them, or pass --standalone")
    outdir = check_output(outdir, src.inputs, force, notes)
    plan, per_slice = _plan(src, ref, opts, notes)
    written = _write_atomically(outdir, force, lambda folder: _write(folder, src, plan,
                                                                     per_slice))
    if plan.geom.z_reversed:
        notes.append("the volume's z axis runs against cross(row, column) (a left-handed grid): "
                     "slices were written in reverse order, so readers return the same voxels "
                     "with the z axis reversed")
    nz, ny, nx = src.shape[:3]
    return ExportResult(
        outdir, [os.path.join(outdir, os.path.basename(p)) for p in written], plan.sop_class,
        plan.modality, plan.series_uid, plan.ident.study_uid, plan.ident.for_uid,
        plan.series_number, plan.series_description, plan.enc, (nx, ny, nz),
        plan.geom.z_reversed, f"{ref.kind} {ref.path}" if ref else None,
        sum(1 for s in (per_slice or []) if s), notes + plan.ident.notes)
