"""The sidecar is the Provenance model's JSON: every sidecar a conversion writes reads back into
typed records and serialises to the same document."""

import json

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
]


@pytest.mark.parametrize("folder,policy,fmt", CASES, ids=[c[0] for c in CASES])
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
