"""One header per image of a file that holds several: the frames of an enhanced multi-frame
file (PS3.3 C.7.6.16 functional groups) and the tiles of a Siemens MOSAIC.

:func:`dicomrecon.headers.read_headers` reads a file's own header, then hands its pydicom
dataset here when it has frames or tiles.
"""

from __future__ import annotations

from .header_model import MosaicTile, SkipFile, SliceHeader, num, str_value, vec


def _fg(frame, shared, seq: str):
    """The item of functional group ``seq`` for a frame: per-frame first, then shared."""
    for src in (frame, shared):
        if src is not None and seq in src and len(src[seq].value):
            return src[seq].value[0]
    return None


def expand_frames(h: SliceHeader, ds) -> list:
    """Per-frame headers of an enhanced multi-frame file (PS3.3 C.7.6.16 functional groups),
    from its pydicom dataset ``ds`` (read once, by :func:`dicomrecon.headers.read_many`)."""
    try:
        return _frames(h, ds)
    except SkipFile:
        raise
    except Exception as exc:  # pydicom raises many types on damaged sequences and values
        raise SkipFile(f"{h.path}: unreadable functional groups ({type(exc).__name__}: {exc})")


def _frames(h: SliceHeader, ds) -> list:
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    if per and len(per) != h.number_of_frames:
        raise SkipFile(f"{h.path}: (5200,9230) 'Per-frame Functional Groups Sequence' has "
                       f"{len(per)} items, (0028,0008) 'Number of Frames' is {h.number_of_frames}")
    out = []
    for k in range(h.number_of_frames):
        fr = per[k] if per else None
        pos, ori = _fg(fr, shared, "PlanePositionSequence"), _fg(fr, shared, "PlaneOrientationSequence")
        meas, pvt = _fg(fr, shared, "PixelMeasuresSequence"), _fg(fr, shared, "PixelValueTransformationSequence")
        echo, content = _fg(fr, shared, "MREchoSequence"), _fg(fr, shared, "FrameContentSequence")
        diff = _fg(fr, shared, "MRDiffusionSequence")
        ftype = (_fg(fr, shared, "MRImageFrameTypeSequence") or _fg(fr, shared, "CTImageFrameTypeSequence")
                 or _fg(fr, shared, "PETFrameTypeSequence"))
        trig = _fg(fr, shared, "CardiacSynchronizationSequence")
        timing = _fg(fr, shared, "MRTimingAndRelatedParametersSequence")
        where = f"{h.path} frame {k + 1}"
        d = dict(h.__dict__)
        d.update(frame=k, extra=dict(h.extra))
        if h.pixel_offset is not None and h.bits_allocated >= 8:
            d["pixel_offset"] = h.pixel_offset + k * h.frame_nbytes
        d["ipp"] = vec(pos, "ImagePositionPatient", 3, where) if pos else h.ipp
        d["iop"] = vec(ori, "ImageOrientationPatient", 6, where) if ori else h.iop
        if meas:
            d["pixel_spacing"] = vec(meas, "PixelSpacing", 2, where) or h.pixel_spacing
            d["slice_thickness"] = num(meas, "SliceThickness") or h.slice_thickness
        if pvt:
            slope, icpt = num(pvt, "RescaleSlope"), num(pvt, "RescaleIntercept")
            d["rescale_slope"] = 1.0 if slope is None else slope
            d["rescale_intercept"] = 0.0 if icpt is None else icpt
            d["rescale_type"] = str_value(pvt, "RescaleType") or h.rescale_type
            d["has_rescale"] = slope is not None or icpt is not None
        if echo:
            d["echo_time"] = num(echo, "EffectiveEchoTime")
        if content:
            d["temporal_position"] = num(content, "TemporalPositionIndex", int)
            d["acquisition_number"] = num(content, "FrameAcquisitionNumber", int) or h.acquisition_number
            d["stack_id"] = str_value(content, "StackID")
        if diff:
            d["diffusion_bvalue"] = num(diff, "DiffusionBValue")
            d["extra"]["DiffusionDirectionality"] = str_value(diff, "DiffusionDirectionality")
            gseq = diff.get("DiffusionGradientDirectionSequence")
            if gseq:
                d["diffusion_direction"] = vec(gseq[0], "DiffusionGradientOrientation", 3, where)
        if timing and num(timing, "RepetitionTime") is not None:
            d["extra"]["RepetitionTime"] = num(timing, "RepetitionTime")
        if trig:
            d["trigger_time"] = num(trig, "NominalCardiacTriggerDelayTime")
        if ftype:
            ft = ftype.get("FrameType")
            if ft:
                d["image_type"] = tuple(str(x) for x in (ft if not isinstance(ft, str) else [ft]))
        out.append(SliceHeader(**d))
    pairs = tuple(dict.fromkeys((f.rescale_slope, f.rescale_intercept) for f in out))
    for f in out:
        f.file_rescale = pairs
    return out


# ------------------------------------------------------------------------ Siemens MOSAIC
def expand_mosaic(h: SliceHeader, ds) -> list:
    """One header per tile of a Siemens MOSAIC image (its slices laid out in a grid).

    The number of tiles and the slice normal come from the Siemens CSA image header (read by
    nibabel's ``nicom.csareader``); the tiles are square-tiled, ``ceil(sqrt(n))`` a side, in
    order along the CSA slice normal.  ImagePositionPatient of a mosaic is the corner of the
    whole mosaic: the first tile's origin is moved by half the size difference between mosaic
    and tile, as nibabel's MosaicWrapper and dcm2niix do; tile k lies k slice spacings
    (SpacingBetweenSlices, else SliceThickness) along the normal.  Without a usable CSA header
    the image stays one header and is refused with the reason.
    """
    import math

    import numpy as np
    try:
        import warnings
        with warnings.catch_warnings():  # nibabel warns that its DICOM *readers* are
            warnings.simplefilter("ignore")  # experimental; only its CSA parser is used here
            from nibabel.nicom import csareader
    except ImportError:
        h.mosaic_problem = "nibabel is not installed (pip install nibabel)"
        return [h]
    try:
        csa = csareader.get_csa_header(ds, "image")
        n = csareader.get_n_mosaic(csa) if csa else None
        normal = csareader.get_slice_normal(csa) if csa else None
        sbs = ds.get("SpacingBetweenSlices")
    except Exception as exc:  # damaged private data: keep one header, refused with the reason
        h.mosaic_problem = f"the Siemens CSA header is unreadable ({type(exc).__name__})"
        return [h]
    if not n or normal is None:
        h.mosaic_problem = ("the Siemens CSA image header (0029,1010) has no "
                                     "NumberOfImagesInMosaic / SliceNormalVector")
        return [h]
    side = math.ceil(math.sqrt(n))
    if h.rows % side or h.columns % side:
        h.mosaic_problem = (f"a {h.rows}x{h.columns} mosaic does not divide into "
                                     f"{side}x{side} tiles for NumberOfImagesInMosaic {n}")
        return [h]
    tr, tc = h.rows // side, h.columns // side
    row, col = np.asarray(h.iop[:3]), np.asarray(h.iop[3:])
    ps = h.pixel_spacing
    first = (np.asarray(h.ipp) + col * ps[0] * (h.rows - tr) / 2
             + row * ps[1] * (h.columns - tc) / 2)
    dz = float(sbs) if sbs else (h.slice_thickness or 1.0)
    normal = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    out = []
    for k in range(n):
        d = dict(h.__dict__)
        d.update(frame=k, rows=tr, columns=tc, extra=dict(h.extra),
                 ipp=tuple(float(v) for v in first + k * dz * normal),
                 tile=MosaicTile(h.rows, h.columns, k // side, k % side))
        out.append(SliceHeader(**d))
    return out
