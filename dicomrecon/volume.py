"""A volume: a numpy array plus its LPS affine, with symmetric SimpleITK / itk / nibabel pairs.

Conventions (the same as SimpleITK's):

* ``array`` has shape ``(nz, ny, nx)`` (``(nz, ny, nx, 3)`` uint8 for RGB), as
  ``SimpleITK.GetArrayFromImage`` gives: z = slice, y = row, x = column.  A 4D volume
  (``read_volumes(..., policy=Policy(merge_4d=True))``) is ``(nt, nz, ny, nx)``: nt 3D
  volumes on one grid, the 4th axis key and values in ``provenance.fourth_axis``.
* ``affine`` is ``(4, 4)`` and maps an index ``(x, y, z, 1)`` -- column, row, slice, in that
  order, the reverse of the array's axes -- to LPS millimetres, as ITK's origin, spacing and
  direction do.  So ``Volume.to_sitk()`` gives the same image, with the same axes, that
  SimpleITK's ``ImageSeriesReader`` gives for a correctly sorted series.
* highdicom's ``Volume`` indexes its array ``(slice, row, column)`` and its affine takes the
  indices in that array order: ``highdicom_affine = affine[:, [2, 1, 0, 3]]``.
* nibabel's images index ``(x, y, z)`` with an RAS affine: ``to_nibabel()`` transposes the
  array and flips LPS to RAS (``LPS_TO_RAS``), so world positions are unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .affines import (apply_affine, axis_codes, decompose_affine, is_orthogonal, lps_to_ras,
                      reorientation, same_grid, subgrid_affine, world_to_index)
from .geometry import DEFAULT_TOLERANCES

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class Volume:
    """A 3D image in patient space: ``array`` (nz, ny, nx) and an index (x, y, z) -> LPS affine.

    ``provenance`` is the typed, frozen record of where the volume came from (source series,
    slices, plan kind, values, resample record, findings): a
    :class:`~dicomrecon.provenance.Provenance`, whose ``to_json()`` is the sidecar, set for
    every volume dicomrecon reads (``json.dumps(vol.provenance.to_json())`` works) and None for
    one made from a bare array or image.  ``metadata`` holds the same knowledge in live objects
    (its ``plan``, values, processing) for export and older callers.  Operations that make a new
    volume (slicing, crop, pad, flip, reorientation) keep both, with the new grid, and append
    to ``operations`` (and ``provenance.operations``).  See the module docstring for how
    the axes relate to SimpleITK's, highdicom's and nibabel's.
    """

    array: np.ndarray
    affine: np.ndarray                       # (4, 4) index (x, y, z) -> LPS mm
    metadata: dict = field(default_factory=dict)
    provenance: Optional["Provenance"] = None  # noqa: F821 (dicomrecon.provenance)
    operations: Tuple[str, ...] = ()         # crop/pad/flip/... applied since it was read

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape_xyz + ((self.array.shape[0],) if self.is_4d else ())))
        sp = ", ".join(f"{v:.4g}" for v in self.spacing)
        o = ", ".join(f"{v:.4g}" for v in self.origin)
        kind = self.provenance.reconstruction if self.provenance is not None else None
        kind = f"{self.label} {kind}" if kind else None
        return (f"Volume({shape} {self.array.dtype}{' RGB' if self.is_rgb else ''}, "
                f"orientation {self.orientation}, spacing ({sp}) mm, origin LPS ({o}) mm"
                + (f", {kind}" if kind else "") + ")")

    @property
    def shape_xyz(self) -> tuple:
        """(nx, ny, nz): the index ranges of the affine's x, y, z (of each 3D volume of a 4D)."""
        spatial = self.array.shape[1:4] if self.is_4d else self.array.shape[:3]
        return tuple(int(n) for n in spatial[::-1])

    @property
    def findings(self) -> tuple:
        """Every finding about the volume's source and reconstruction (from its provenance)."""
        return self.provenance.findings if self.provenance is not None else ()

    @property
    def is_4d(self) -> bool:
        """(nt, nz, ny, nx): several 3D volumes on one grid (not RGB)."""
        return self.array.ndim == 4 and not self.is_rgb

    @property
    def label(self) -> str:
        """The group label ``dicomrecon scan`` prints ("7.1", "7.1p2", "7.1+7.2" for a 4D), or
        "" for a volume dicomrecon did not read."""
        src = self.provenance.source if self.provenance is not None else None
        if src is None or src.group is None:
            return ""
        group = src.group if isinstance(src.group, str) else "+".join(src.group)
        return group + (f"p{src.part}" if src.part else "")

    def at(self, t: int) -> "Volume":
        """Volume ``t`` of a 4D volume, as a 3D Volume on the same grid (its own values and
        sources in ``provenance``)."""
        if not self.is_4d:
            raise ValueError(f"at({t}): this is a 3D volume {self.shape_xyz}, not a 4D one")
        prov = self.provenance
        if prov is not None and prov.volumes is not None:
            from dataclasses import replace

            from .recording import volume_record
            e = prov.volumes[t]
            prov = replace(prov, volume=volume_record(self.array[t], self.affine, "", "", False),
                           source=replace(prov.source, group=e.group, split_keys=e.split_keys),
                           values=e.values, slices=e.slices, source_slices=e.source_slices,
                           resample=e.resample, volumes=None, fourth_axis=None)
        return Volume(self.array[t], self.affine, {**self.metadata, "t": t}, prov, self.operations)

    def _spatial(self, what: str) -> None:
        if self.is_4d:
            raise ValueError(f"{what} works on a 3D volume; this one is 4D "
                             f"{self.shape_xyz} x {self.array.shape[0]}: take volume t with "
                             ".at(t) first")

    @property
    def orientation(self) -> str:
        """Patient directions the x, y and z indices increase towards, e.g. "LPS" (axial)."""
        return axis_codes(self.affine)

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

    def index(self, points_lps, *, round: bool = True, check_bounds: bool = False) -> np.ndarray:
        """(..., 3) indices (x, y, z) of LPS points: integers (nearest voxel) when ``round``.

        With ``check_bounds``, raise ``IndexError`` naming the first point outside the array
        (beyond half a voxel from the outer voxel centres).
        """
        idx = world_to_index(self.affine, points_lps)
        if check_bounds:
            flat = idx.reshape(-1, 3)
            bad = np.any((flat < -0.5) | (flat > np.asarray(self.shape_xyz) - 0.5), axis=1)
            if bad.any():
                k = int(np.argmax(bad))
                raise IndexError(f"point {np.asarray(points_lps, float).reshape(-1, 3)[k].tolist()}"
                                 f" (LPS mm) lies outside the volume {self.shape_xyz}: index "
                                 f"{flat[k].round(3).tolist()}")
        return np.rint(idx).astype(np.int64) if round else idx

    # --- new volumes from this one, without resampling ---------------------------------------
    def _derived(self, array, affine, operation: str) -> "Volume":
        operations = self.operations + (operation,)
        prov = self.provenance
        if prov is not None:
            from dataclasses import replace

            from .recording import volume_record
            grid = volume_record(array, affine, "", "", self.is_rgb)
            prov = replace(prov, volume=grid, operations=operations)
        return Volume(array, affine, dict(self.metadata), prov, operations)

    def __getitem__(self, key) -> "Volume":
        """``vol[z0:z1, y0:y1, x0:x1]`` (array order, like ``vol.array``): a sub-volume whose
        affine places every kept voxel where it was.  Integers keep their axis (length 1);
        steps, also negative, are allowed."""
        self._spatial("indexing")
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3 or any(k is Ellipsis for k in key):
            raise IndexError("index a Volume with up to three slices or integers (z, y, x)")
        key = tuple(key) + (slice(None),) * (3 - len(key))
        slices = []
        for k, n in zip(key, self.array.shape[:3]):
            if isinstance(k, (int, np.integer)):
                i = int(k) + n if k < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of range for an axis of length {n}")
                k = slice(i, i + 1)
            if not isinstance(k, slice):
                raise IndexError(f"a Volume is indexed by slices or integers, not {k!r}")
            slices.append(k)
        starts, steps = [], []
        for k, n in zip(slices, self.array.shape[:3]):
            start, _, step = k.indices(n)
            starts.append(start)
            steps.append(step)
        array = self.array[tuple(slices)]
        if 0 in array.shape[:3]:
            raise IndexError(f"{key} selects no voxel of a volume of shape {self.array.shape[:3]}")
        affine = subgrid_affine(self.affine, starts[::-1], steps[::-1])
        return self._derived(array, affine, f"index {_key_text(slices)}")

    def crop(self, start_xyz, stop_xyz) -> "Volume":
        """The voxels from index ``start_xyz`` (inclusive) to ``stop_xyz`` (exclusive)."""
        (x0, y0, z0), (x1, y1, z1) = start_xyz, stop_xyz
        return self[z0:z1, y0:y1, x0:x1]

    def pad(self, width, value=0) -> "Volume":
        """Add ``width`` voxels of ``value`` around the volume: an int (every side), or
        ``((x_before, x_after), (y_before, y_after), (z_before, z_after))``."""
        self._spatial("pad()")
        w = np.asarray(width, dtype=np.int64)
        if w.ndim == 1 and w.shape == (3,):  # (x, y, z): the same before and after
            w = np.repeat(w[:, None], 2, 1)
        if w.ndim not in (0, 2) or w.ndim == 2 and w.shape != (3, 2):
            raise ValueError(f"pad width {w.tolist()}: give an int, (x, y, z), or "
                             "((x_before, x_after), (y_before, y_after), (z_before, z_after))")
        w = np.broadcast_to(w, (3, 2))
        if np.any(w < 0):
            raise ValueError(f"pad widths must be >= 0, not {np.asarray(width).tolist()}")
        pad_zyx = [tuple(w[i]) for i in (2, 1, 0)] + [(0, 0)] * (self.array.ndim - 3)
        array = np.pad(self.array, pad_zyx, constant_values=value)
        affine = subgrid_affine(self.affine, -w[:, 0])
        return self._derived(array, affine, f"pad {w.tolist()} (x, y, z) with {value}")

    def flip(self, axes) -> "Volume":
        """Reverse the index order along ``axes`` ("x", "y", "z" or 0, 1, 2 for x, y, z)."""
        axes = [axes] if isinstance(axes, (str, int)) else list(axes)
        idx = [_AXES[a] if isinstance(a, str) else int(a) for a in axes]
        key = [slice(None)] * 3
        for i in idx:
            key[2 - i] = slice(None, None, -1)
        return self[tuple(key)]

    def to_orientation(self, code: str) -> "Volume":
        """Permute and flip axes (no resampling) so that x, y, z increase towards the letters
        of ``code`` as nearly as the grid allows: "LPS" (DICOM/ITK), "RAS" (NIfTI), "SPL"...
        """
        self._spatial("to_orientation()")
        order, flips, affine = reorientation(self.affine, self.shape_xyz, code)
        perm = [2 - order[2 - k] for k in range(3)]  # array axes (z, y, x) from old array axes
        array = np.transpose(self.array, perm + list(range(3, self.array.ndim)))
        key = tuple(slice(None, None, -1) if flips[2 - k] else slice(None) for k in range(3))
        return self._derived(np.ascontiguousarray(array[key]), affine, f"to_orientation {code}")

    def geometry_equal(self, other, atol: float = DEFAULT_TOLERANCES.same_grid_mm) -> bool:
        """Same shape and affine (within ``atol``) as another Volume or a SimpleITK image."""
        if not isinstance(other, Volume):
            other = Volume.from_sitk(other) if hasattr(other, "GetOrigin") else other
        return same_grid(self.affine, self.shape_xyz, other.affine, other.shape_xyz, atol)

    def resample_like(self, other, *, interpolation: str = "linear", fill=0) -> "Volume":
        """This volume's values on ``other``'s grid (a Volume or SimpleITK image), through
        SimpleITK; voxels of the new grid outside this volume get ``fill``."""
        import SimpleITK as sitk
        self._spatial("resample_like()")
        ref = other.to_sitk() if isinstance(other, Volume) else other
        kinds = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}
        if interpolation not in kinds:
            raise ValueError(f"interpolation {interpolation!r}: use linear or nearest")
        out = sitk.Resample(self.to_sitk(), ref, sitk.Transform(), kinds[interpolation],
                            float(fill))
        res = Volume.from_sitk(out)
        return self._derived(res.array, res.affine, f"resample_like ({interpolation})")

    # --- files -------------------------------------------------------------------------------
    def save(self, path, *, sidecar: bool = True) -> str:
        """Write ``path`` (.nii, .nii.gz, .nrrd or .mha, atomically) and, with ``sidecar``,
        ``NAME.json`` beside it (the volume's grid, the operations applied, and the source
        series when dicomrecon read it).  Returns the path written."""
        from .writers import output_format, write_json, write_volume
        path = os.fspath(path)
        fmt = output_format(path)
        if fmt is None:
            raise ValueError(f"{path}: the name must end in .nii, .nii.gz, .nrrd or .mha")
        fourth = self.provenance.fourth_axis if self.provenance is not None else None
        write_volume(path, self.array, self.affine, fmt, rgb=self.is_rgb,
                     description="dicomrecon Volume.save",
                     tr=fourth.repetition_time_s if fourth is not None else None)
        if sidecar:
            write_json(_sidecar_path(path), self._sidecar(os.path.basename(path), fmt))
        return path

    def _sidecar(self, filename: str, fmt: str) -> dict:
        if self.provenance is not None:  # a volume dicomrecon read: its full provenance
            from dataclasses import replace
            prov = self.provenance
            return replace(prov, volume=replace(prov.volume, file=filename, format=fmt)).to_json()
        origin, spacing, direction = decompose_affine(self.affine)
        return {"volume": {"file": filename, "format": fmt, "shape_xyz": list(self.shape_xyz),
                           "dtype": str(self.array.dtype), "components": 3 if self.is_rgb else 1,
                           "affine_lps": self.affine.tolist(),
                           "affine_ras": lps_to_ras(self.affine).tolist(),
                           "origin_lps": origin.tolist(), "spacing": spacing.tolist(),
                           "direction_lps": direction.tolist()},
                "operations": list(self.operations)}

    @classmethod
    def load(cls, path) -> "Volume":
        """Read a .nii/.nii.gz (nibabel: sform, sheared grids too), .nrrd or .mha (SimpleITK)
        file; its sidecar ``NAME.json``, when present, is ``metadata["sidecar"]``."""
        import json
        path = os.fspath(path)
        if path.endswith((".nii", ".nii.gz")):
            import nibabel as nib
            vol = cls.from_nibabel(nib.load(path))
        else:
            import SimpleITK as sitk
            vol = cls.from_sitk(sitk.ReadImage(path))
        side = _sidecar_path(path)
        if os.path.isfile(side):
            with open(side) as fp:
                vol.metadata["sidecar"] = json.load(fp)
            vol.operations = tuple(vol.metadata["sidecar"].get("operations") or ())
            if "source" in vol.metadata["sidecar"]:  # a dicomrecon volume's full provenance
                from .provenance import Provenance
                vol.provenance = Provenance.from_json(vol.metadata["sidecar"])
        return vol

    def to_dicom(self, outdir, **kwargs):
        """Write the volume as a derived DICOM series (see :func:`dicomrecon.export.export_series`
        for ``like=``, ``series_description=`` and the other keywords)."""
        from .export import export_series
        return export_series(self, outdir, **kwargs)

    # --- nibabel ------------------------------------------------------------------------------
    def to_nibabel(self):
        """A ``nibabel.Nifti1Image``: array (x, y, z), RAS affine (sform and qform code 1)."""
        import nibabel as nib
        axes = (3, 2, 1, 0) if self.is_4d else (2, 1, 0) + tuple(range(3, self.array.ndim))
        data = np.ascontiguousarray(np.transpose(self.array, axes))
        if self.is_rgb:
            rgb = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
            data = np.ascontiguousarray(data).view(rgb)[..., 0]
        img = nib.Nifti1Image(data, lps_to_ras(self.affine))  # 4D: (x, y, z, t)
        img.set_sform(lps_to_ras(self.affine), code=1)
        if self.is_orthogonal:
            img.set_qform(lps_to_ras(self.affine), code=1)
        return img

    @classmethod
    def from_nibabel(cls, image, metadata: dict | None = None) -> "Volume":
        """From a 3D nibabel image (its best affine: sform, else qform), values as stored
        after nibabel's scaling."""
        data = np.asanyarray(image.dataobj)
        meta = dict(metadata or {})
        if data.dtype.names == ("R", "G", "B"):
            data = data.view(np.uint8).reshape(data.shape + (3,))
            meta["rgb"] = True
        if data.ndim != (4 if meta.get("rgb") else 3):
            raise ValueError(f"expected a 3D image, got shape {data.shape}")
        array = np.ascontiguousarray(np.transpose(data, (2, 1, 0) + tuple(range(3, data.ndim))))
        return cls(array, lps_to_ras(np.asarray(image.affine, dtype=float)), meta)

    # --- highdicom (optional: pip install highdicom) -----------------------------------------
    def to_highdicom(self):
        """A ``highdicom.Volume`` (patient coordinates): same array, affine in array order."""
        import highdicom as hd
        self._spatial("to_highdicom()")
        if self.is_rgb:
            raise ValueError("to_highdicom() takes a scalar volume, not RGB")
        return hd.Volume(self.array, self.affine[:, [2, 1, 0, 3]], coordinate_system="PATIENT")

    @classmethod
    def from_highdicom(cls, volume, metadata: dict | None = None) -> "Volume":
        """From a 3D ``highdicom.Volume`` in patient coordinates."""
        if str(getattr(volume.coordinate_system, "value", volume.coordinate_system)) != "PATIENT":
            raise ValueError("the highdicom Volume is not in patient coordinates")
        if volume.array.ndim != 3:
            raise ValueError(f"expected a 3D highdicom Volume, got shape {volume.array.shape}")
        return cls(np.asarray(volume.array), np.asarray(volume.affine, float)[:, [2, 1, 0, 3]],
                   dict(metadata or {}))

    # --- SimpleITK -------------------------------------------------------------------------
    def to_sitk(self):
        import SimpleITK as sitk

        self._spatial("to_sitk()")
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
        self._spatial("to_itk()")
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


def _sidecar_path(path: str) -> str:
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if path.endswith(ext):
            return path[: -len(ext)] + ".json"
    return path + ".json"


def _key_text(slices) -> str:
    def one(k):
        return f"{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}" + (
            f":{k.step}" if k.step not in (None, 1) else "")
    return "[" + ", ".join(one(k) for k in slices) + "] (z, y, x)"


def _affine(origin, spacing, direction) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a
