"""The sidecar is the Provenance model's JSON: every sidecar a conversion writes reads back into
typed records and serialises to the same document."""

import json
import os

import numpy as np
import pytest

from dicomrecon.conversion import convert
from dicomrecon.geometry import Finding
from dicomrecon.plan import Policy
from dicomrecon.provenance import (SCHEMA_VERSION, OutputSlice, Provenance, SourceSlice,
                                   ValuesRecord, load)

CASES = [  # (corpus folder, policy, format): every reconstruction kind and sidecar layout
    ("ct_ge_tilt18p5_varspacing", Policy(), "nii.gz"),                 # resample, fill
    ("ct_philips_s21610_s3010_tilt16p5", Policy(tilt="preserve"), "nrrd"),  # sheared
    ("dnp_ct_kits_dupe_positions", Policy(irregular="split"), "nii"),  # parts, duplicates
    ("ge_fmri_multiphase_4d", Policy(merge_4d=True), "nii"),           # 4D
    ("ts_si_mosaic_9ts", Policy(), "mha"),                             # mosaic tiles
    ("pyd_ect_enhanced_2frame", Policy(), "nii"),                      # frames
    ("d2n_mr_rgb_j2k", Policy(), "nii"),                               # RGB
    ("pyd_cr_monochrome1_j2kr", Policy(no_geometry=True), "nii"),      # placeholder
    ("d2n_ph_dwi_b1000_3dir", Policy(), "nii"),                        # 3D diffusion records
    ("d2n_ph_dwi_b1000_3dir", Policy(merge_4d=True), "nii"),           # 4D .bval/.bvec table
    ("mosaic_si_fmri_ep2d_int", Policy(merge_4d=True), "nii"),         # 4th axis time, TR
]


@pytest.mark.parametrize("folder,policy,fmt", CASES,
                         ids=[c[0] + ("-4d" if c[1].merge_4d else "") for c in CASES])
def test_every_sidecar_round_trips_through_the_model(corpus, tmp_path, folder, policy, fmt):
    result = convert(str(corpus / folder), str(tmp_path), fmt=fmt, policy=policy)
    assert result.outputs, result.refused
    for out in result.outputs:
        with open(out.sidecar) as fp:
            doc = json.load(fp)
        prov = Provenance.from_json(doc)
        back = prov.to_json()
        assert back.pop("schema_version") == SCHEMA_VERSION
        doc.pop("schema_version", None)
        assert back == doc
        assert isinstance(prov.values, ValuesRecord)
        assert all(isinstance(f, Finding) for f in prov.findings)
        np.testing.assert_allclose(prov.volume.affine, np.asarray(doc["volume"]["affine_lps"]))
        slices = prov.slices if prov.slices is not None else prov.volumes[0].slices
        kind = OutputSlice if prov.reconstruction == "resample" else SourceSlice
        assert all(isinstance(s, kind) for s in slices)


def test_records_are_frozen_and_typed(corpus, tmp_path):
    result = convert(str(corpus / "ct_ge_tilt18p5_varspacing"), str(tmp_path), fmt="nii")
    prov = Provenance.from_json(json.load(open(result.outputs[0].sidecar)))
    assert prov.resample.fill.source.startswith("PixelPaddingValue")
    assert prov.geometry.spacing.regular is False and prov.resample.grid.spacing_rule == "median"
    assert prov.slices[0].sources[0].weight == 1.0
    with pytest.raises(AttributeError):
        prov.reconstruction = "stack"
    with pytest.raises(TypeError):
        prov.source.split_keys["x"] = 1


def test_newer_schema_and_bad_fields_are_named():
    with pytest.raises(ValueError, match="newer than this dicomrecon reads"):
        Provenance.from_json({"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ValueError, match=r"Contribution.*weight|OutputSlice"):
        load(OutputSlice, {"z": 0, "position_mm": 1.0, "sources": {"weight": 1}})


def test_new_records_are_typed_and_bids_sidecars_read_their_dicomrecon_record(corpus, tmp_path):
    from dicomrecon.provenance import DiffusionRecord, DiffusionTable
    r = convert(str(corpus / "d2n_ph_dwi_b1000_3dir"), str(tmp_path / "a"), fmt="nii")
    recs = [Provenance.from_file(o.sidecar).diffusion for o in r.outputs]
    assert any(isinstance(d, DiffusionRecord) and d.b_value == 1000 for d in recs)
    r = convert(str(corpus / "d2n_ph_dwi_b1000_3dir"), str(tmp_path / "b"), fmt="nii",
                policy=Policy(merge_4d=True))
    assert any(isinstance(Provenance.from_file(o.sidecar).diffusion, DiffusionTable)
               for o in r.outputs)
    r = convert(str(corpus / "mosaic_si_fmri_ep2d_int"), str(tmp_path / "c"), fmt="nii",
                policy=Policy(merge_4d=True), bids=True)
    doc = json.load(open(r.outputs[0].sidecar))
    assert "RepetitionTime" in doc and "volume" not in doc  # a BIDS sidecar
    prov = Provenance.from_json(doc)
    assert prov.to_json() == {**doc["dicomrecon"], "schema_version": SCHEMA_VERSION}
    assert prov.fourth_axis.repetition_time_s == doc["RepetitionTime"]
    assert doc["dicomrecon"]["schema_version"] == SCHEMA_VERSION


def test_a_read_volume_carries_its_provenance_and_serialises_without_the_plan(corpus, tmp_path):
    import dataclasses

    import dicomrecon
    folder = corpus / "ct_ge_tilt18p5_varspacing"
    vol = dicomrecon.read_volume(folder)
    text = json.dumps(vol.provenance.to_json())
    assert "VolumePlan" not in text and vol.provenance.reconstruction == "resample"
    assert vol.provenance.volume.shape_xyz == vol.shape_xyz
    np.testing.assert_allclose(vol.provenance.volume.affine, vol.affine)
    # the same record convert writes, but for the file name and time
    out = convert(str(folder), str(tmp_path), fmt="nii").outputs[0]
    written = Provenance.from_file(out.sidecar)
    mine = dataclasses.replace(vol.provenance, created=written.created,
                               volume=dataclasses.replace(vol.provenance.volume, file=written.volume.file,
                                                          format="nii"))
    assert mine == written
    # a crop keeps the provenance with the new grid, and the saved sidecar reads back
    sub = vol.crop((2, 3, 1), (20, 30, 5))
    assert sub.provenance.volume.shape_xyz == (18, 27, 4)
    assert sub.provenance.operations and sub.provenance.source == vol.provenance.source
    back = type(vol).load(sub.save(tmp_path / "sub.nii.gz"))
    assert back.provenance.operations == sub.provenance.operations
    np.testing.assert_allclose(back.provenance.volume.affine, sub.affine)


@pytest.mark.parametrize("path, base", [
    ("/a/b/c.dcm", "/a"), ("/a/b/../c.dcm", "/a"), ("/a//b/c.dcm", "/a"), ("/ab/c.dcm", "/a"),
    ("rel/x.dcm", "/tmp"), ("/a/.h/x.dcm", "/a"), ("/x.dcm", "/"), ("/a/b/", "/a"),
    ("/a/b/./c.dcm", "/a")])
def test_source_names_equal_relpath(path, base):
    """The sidecar's source file names: the fast cut equals os.path.relpath everywhere."""
    from dicomrecon.recording import _relative
    assert _relative(path, base) == os.path.relpath(path, base)
