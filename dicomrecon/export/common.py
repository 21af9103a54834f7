"""What every part of export shares: new UIDs, the SOP classes, the usage error, and the
geometry checks that turn a sheared grid into a refusal."""

from __future__ import annotations

import uuid

import numpy as np

from .. import affines
from ..affines import SliceGeometry
from ..errors import DicomReconError, ExitCode, RefusedError

#: Root of every UID dicomrecon makes: "2.25." + the integer of a random (version 4) UUID.
UID_ROOT = "2.25."

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SOP_CLASS_NAMES = {CT_IMAGE_STORAGE: "CT Image Storage", MR_IMAGE_STORAGE: "MR Image Storage",
                   SC_IMAGE_STORAGE: "Secondary Capture Image Storage"}


class ExportUsageError(DicomReconError):
    """Options that contradict each other (exit code 2, like any usage error)."""

    exit_code = ExitCode.USAGE


def new_uid() -> str:
    """A new UID under :data:`UID_ROOT` (at most 44 characters)."""
    return UID_ROOT + str(uuid.uuid4().int)


def slice_geometry(affine: np.ndarray, nz: int) -> SliceGeometry:
    """:func:`dicomrecon.affines.slice_geometry`, refusing (exit 5) a sheared grid."""
    try:
        return affines.slice_geometry(affine, nz)
    except affines.GeometryError as exc:
        raise RefusedError(str(exc)) from None


def check_orthogonal(direction: np.ndarray) -> None:
    """:func:`dicomrecon.affines.check_orthogonal`, refusing (exit 5) a sheared grid."""
    try:
        affines.check_orthogonal(direction)
    except affines.GeometryError as exc:
        raise RefusedError(str(exc)) from None
