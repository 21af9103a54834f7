"""A volume: a numpy array plus its LPS affine, with symmetric SimpleITK / itk conversions.

``array`` has shape (nz, ny, nx), as ``SimpleITK.GetArrayFromImage`` gives; ``affine`` maps
index (x=column, y=row, z=slice, 1) to LPS millimetres, as ITK's origin/spacing/direction do.
So ``Volume.to_sitk()`` gives the same image, with the same axes, that SimpleITK's
``ImageSeriesReader`` gives for a correctly sorted series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import apply_affine, decompose_affine, is_orthogonal, lps_to_ras


@dataclass
class Volume:
    array: np.ndarray
    affine: np.ndarray                       # (4, 4) index (x, y, z) -> LPS mm
    metadata: dict = field(default_factory=dict)

    # --- geometry ------------------------------------------------------------------------
    @property
    def affine_ras(self) -> np.ndarray:
        """(4, 4) index (x, y, z) -> RAS mm, as NIfTI's sform for an x-fastest array."""
        return lps_to_ras(self.affine)

    @property
    def origin(self) -> np.ndarray:
        return decompose_affine(self.affine)[0]

    @property
    def spacing(self) -> np.ndarray:
        return decompose_affine(self.affine)[1]

    @property
    def direction(self) -> np.ndarray:
        return decompose_affine(self.affine)[2]

    @property
    def is_rgb(self) -> bool:
        """(nz, ny, nx, 3) uint8 colour."""
        return bool(self.metadata.get("rgb")) and self.array.ndim == 4 \
            and self.array.shape[-1] == 3 and self.array.dtype == np.uint8

    @property
    def is_orthogonal(self) -> bool:
        return is_orthogonal(self.direction)

    def world(self, index_xyz) -> np.ndarray:
        """LPS mm of (..., 3) indices (x, y, z)."""
        return apply_affine(self.affine, index_xyz)

    # --- SimpleITK -------------------------------------------------------------------------
    def to_sitk(self):
        import SimpleITK as sitk

        if not self.is_orthogonal:
            raise ValueError("a sheared grid cannot be an ITK image (its direction must be "
                             "orthonormal); resample it first")
        img = sitk.GetImageFromArray(self.array, isVector=self.is_rgb)
        origin, spacing, direction = decompose_affine(self.affine)
        img.SetOrigin(tuple(origin))
        img.SetSpacing(tuple(spacing))
        img.SetDirection(tuple(direction.ravel()))
        return img

    @classmethod
    def from_sitk(cls, image, metadata: dict | None = None) -> "Volume":
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        array = sitk.GetArrayFromImage(image)
        meta = dict(metadata or {})
        if image.GetNumberOfComponentsPerPixel() == 3 and array.dtype == np.uint8:
            meta.setdefault("rgb", True)
        return cls(array, _affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection()),
                   meta)

    # --- itk (optional extra: pip install dicomrecon[itk]) ---------------------------------
    def to_itk(self):
        try:
            import itk
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("to_itk() needs the itk package: pip install 'dicomrecon[itk]'") from exc
        if not self.is_orthogonal:
            raise ValueError("a sheared grid cannot be an ITK image; resample it first")
        img = itk.image_from_array(np.ascontiguousarray(self.array))
        origin, spacing, direction = decompose_affine(self.affine)
        img.SetOrigin([float(v) for v in origin])
        img.SetSpacing([float(v) for v in spacing])
        img.SetDirection(itk.matrix_from_array(np.ascontiguousarray(direction)))
        return img

    @classmethod
    def from_itk(cls, image, metadata: dict | None = None) -> "Volume":
        import itk

        array = itk.array_from_image(image)
        direction = itk.array_from_matrix(image.GetDirection())
        return cls(array, _affine(tuple(image.GetOrigin()), tuple(image.GetSpacing()),
                                  direction.ravel()), dict(metadata or {}))


def _affine(origin, spacing, direction) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a
