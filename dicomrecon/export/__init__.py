"""Export a volume as a derived DICOM series that dicomrecon, SimpleITK and dcm2niix read back.

:func:`export_series` writes any 3D volume dicomrecon can hold - a
:class:`~dicomrecon.volume.Volume` (e.g. from :func:`dicomrecon.read_volume`), a
``SimpleITK.Image``, a NIfTI / NRRD / MHA file or a DICOM folder holding one volume - as one
single-frame DICOM file per slice.

Geometry
    Slice ``k`` gets ImagePositionPatient ``affine @ (0, 0, k, 1)`` and every slice gets
    ImageOrientationPatient from the direction's x (row) and y (column) axes, PixelSpacing
    ``[y spacing, x spacing]``, SpacingBetweenSlices (the z spacing), SliceThickness (the z
    spacing; the source's SliceThickness for a volume stacked as acquired on exactly its
    reference's grid), and SliceLocation ``IPP . cross(row, column)``.  Oblique grids are
    written as they are.  A
    sheared grid (axes not perpendicular, e.g. a gantry tilt kept with ``--tilt preserve``) is
    refused, naming the angles.  A left-handed grid (z against ``cross(row, column)``, as many
    NIfTI files are) is written with its slices in reverse order, because every DICOM reader
    stacks slices along ``cross(row, column)``: the same voxels at the same world positions,
    read back with the z axis reversed (``ExportResult.z_reversed``).

Identity
    With a reference - ``like=`` a DICOM folder or the JSON sidecar of a dicomrecon conversion;
    automatically the sidecar ``NAME.json`` beside an input ``NAME.nii.gz``, the source series of
    a DICOM folder input, or the source of a Volume read by dicomrecon - the Patient (name, ID,
    issuer, birth date, sex), the Study (UID, date, time, ID, accession number, referring
    physician, description) and the FrameOfReferenceUID are read from the reference's DICOM
    files and kept.  The series gets ImageType ``DERIVED\\SECONDARY``, a DerivationDescription,
    a RelatedSeriesSequence naming the source series and, when the volume is on the source's
    grid, per-instance SourceImageSequence items (the source slice, or for a resampled volume
    every source slice it was interpolated from) mirrored in ReferencedSeriesSequence.
    ``standalone=True`` ignores the automatic reference.  ``modality=`` overrides the Modality
    (e.g. ``OT`` for a label image made from a CT, which is not HU).
    Without a reference: new Study and FrameOfReference, optional patient name and ID.

UIDs
    Every new UID (Series, SOP Instance, and Study / FrameOfReference without a reference) is
    ``2.25.<integer of a random UUID>`` (ITU-T X.667 / ISO/IEC 9834-8, DICOM PS3.5 B.2): it
    needs no registered root and two exports never collide (SimpleITK's example derives its
    SeriesInstanceUID from the date and time, which collides).

Values (:mod:`.values`: :func:`plan_encoding`, :func:`encode_plane`, pure numpy)
    Stored as 16-bit integers, one RescaleSlope / RescaleIntercept for the whole series.
    Integer data (and float data whose values are all whole numbers) are exact: stored as they
    are when they fit uint16 or int16, else with an integer RescaleIntercept when their range
    spans at most 65535.  CT keeps HU with the usual intercept: stored = HU + 1024 (uint16, or
    int16 when that does not fit), RescaleIntercept -1024, RescaleType HU.  Other float data
    are quantised onto uint16 with RescaleIntercept = the minimum and RescaleSlope = range /
    65535 (the finest step 16 bits allow); the step and the largest error are reported
    (``ExportResult.values``).  NaN or infinite values are refused.  Label images (integers)
    stay exact.  InstanceNumber counts from 1.

SOP class (:func:`choose_sop_class`)
    The Modality is ``modality=``, else the reference's, else that of the volume's DICOM
    source, else OT (a NIfTI file alone does not say).
    * Modality CT: **CT Image Storage**.  Its IOD is satisfiable for any derived CT: the CT Image
      module needs only rescale (which CT always has here), 16-bit pixels and Type 2
      attributes (KVP copied from the reference or empty; AcquisitionNumber empty).
    * Modality MR, when no rescale is needed (integers stored as they are) and the reference
      supplies the MR Image module's Type 1 ScanningSequence and SequenceVariant:
      **MR Image Storage**, with the reference's MR acquisition attributes.  The MR IOD has
      no Modality LUT module, so MR data that need RescaleSlope / Intercept are not written as
      MR Image Storage.
    * Everything else (float or rescaled MR, other modalities, no reference, RGB): **Secondary
      Capture Image Storage** (single frame, Modality kept, ConversionType WSD), whose IOD has
      the Modality LUT module for rescale.  The SC IOD has no Image Plane or Frame of Reference
      module, so ImagePositionPatient, ImageOrientationPatient, SliceThickness,
      SpacingBetweenSlices, SliceLocation and FrameOfReferenceUID are standard extended
      attributes there (dciodvfy warns); dicomrecon, SimpleITK (GDCM) and dcm2niix all read them.
    * Multi-frame objects are not used: dicomrecon and many tools read single-frame series.

Output
    The series is written into a temporary folder ``.NAME.PID.RANDOM.dicomrecon-part`` beside
    ``outdir`` (``NAME`` its base name; see :data:`dicomrecon.writers.TEMP_SUFFIX`) and renamed
    into place; an existing non-empty ``outdir`` is replaced only with ``force=True``
    (OutputError otherwise), and never when it is, holds, or lies inside an input.  An error or
    an interrupting signal (SIGINT, SIGTERM, SIGHUP; :mod:`dicomrecon.signals`) removes the
    temporary folder; the temporaries of a killed export are removed by the next export to the
    same ``outdir`` (``ExportResult.notes`` says so).

Memory
    The series-level dataset is built once; values are planned from statistics gathered a
    slice at a time and each slice is encoded and written on its own, so an export holds the
    volume (or, for a NIfTI / MetaImage / plain NRRD file, which are streamed, at most a
    quarter of it) plus one slice.  ``scripts/export_memory.py`` measures it.

Package layout
    :mod:`.values` (value encoding), :mod:`.reference` (references and identity),
    :mod:`.sources` (what is read), :mod:`.build` (the DICOM datasets), :mod:`.series`
    (:func:`export_series`), :mod:`.common` (UIDs, SOP classes).
"""

from __future__ import annotations

from .build import IMAGE_TYPE_VALUE3, SeriesPlan, choose_sop_class, series_dataset, slice_dataset
from .common import (CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SC_IMAGE_STORAGE, SOP_CLASS_NAMES,
                     UID_ROOT, ExportUsageError, check_orthogonal, new_uid, slice_geometry)
from .reference import (CT_COPY_KEYWORDS, MR_COPY_KEYWORDS, MR_TYPE2, PATIENT_KEYWORDS,
                        SAME_GRID_MM, SERIES_COPY_KEYWORDS, STUDY_KEYWORDS, Identity, Reference,
                        identity, is_sidecar, reference_from_dicom, reference_from_sidecar,
                        reference_from_volume)
from .series import ExportResult, check_output, export_series
from .sources import VOLUME_EXTENSIONS, Source, load_source, nifti_sform, sidecar_beside
from .values import ValueEncoding, ds_str, encode_plane, plan_encoding, plan_values

__all__ = ["export_series", "ExportResult", "ValueEncoding", "plan_values", "plan_encoding",
           "encode_plane", "slice_geometry", "choose_sop_class", "new_uid", "UID_ROOT",
           "ExportUsageError", "CT_IMAGE_STORAGE", "MR_IMAGE_STORAGE", "SC_IMAGE_STORAGE"]
