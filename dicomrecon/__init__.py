"""dicomrecon: DICOM slice series to correct 3D volumes, or a refusal with a reason.

Python API (ITK users)::

    import dicomrecon
    result = dicomrecon.scan("study/")            # series, groups, skipped files, findings
    image = dicomrecon.read("study/series1/")     # SimpleITK.Image in LPS, x=column y=row z=slice
    vol = dicomrecon.read_volume("study/series1/")  # numpy (nz, ny, nx) + (4, 4) LPS affine
    vol.provenance.to_json()                      # typed, frozen provenance = the sidecar
    vol.to_itk()                                  # itk.Image (pip install 'dicomrecon[itk]')
    rows = dicomrecon.batch(["archive/"], "out/", workers=2)  # a whole archive, resumable

Submodules are imported lazily so that the command line starts fast.
"""

__version__ = "0.1.0"

__all__ = ["scan", "read", "read_volume", "read_volumes", "convert", "batch", "Policy", "Volume",
           "Provenance", "Tolerances", "DicomReconError", "__version__"]

#: Submodules reachable as attributes (``dicomrecon.errors``) without an explicit import.
SUBMODULES = ("api", "conversion", "discovery", "errors", "export", "geometry", "plan",
              "provenance", "resample", "volume", "writers")


def __dir__():
    return sorted(set(__all__) | set(SUBMODULES) | set(globals()))


def __getattr__(name):
    if name in SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("scan", "read", "read_volume", "read_volumes"):
        from . import api
        return getattr(api, name)
    if name == "convert":
        from .conversion import convert
        return convert
    if name == "batch":  # the subpackage, callable: dicomrecon.batch(inputs, outdir, ...)
        import importlib
        return importlib.import_module(".batch", __name__)
    if name == "Policy":
        from .plan import Policy
        return Policy
    if name == "Volume":
        from .volume import Volume
        return Volume
    if name == "Provenance":
        from .provenance import Provenance
        return Provenance
    if name == "Tolerances":
        from .geometry import Tolerances
        return Tolerances
    if name == "DicomReconError":
        from .errors import DicomReconError
        return DicomReconError
    raise AttributeError(f"module 'dicomrecon' has no attribute {name!r}")
