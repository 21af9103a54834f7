"""Vendor-specific header rules (diffusion encoding, slice timing, phase-encoding polarity).

Each reader turns the tags one vendor uses into a small typed record in patient (LPS)
coordinates and says which tags it came from.  The rules were learnt from the public dcm2niix
sources and documentation (neurolabusc/dcm2niix ``nii_dicom.cpp``, ``nii_dicom_batch.cpp``) and
checked against dcm2niix's output on the real corpus (tests/test_diffusion_corpus.py).
"""

from .diffusion import Diffusion, PRIVATE_TAGS, label_diffusion

__all__ = ["Diffusion", "PRIVATE_TAGS", "label_diffusion"]
