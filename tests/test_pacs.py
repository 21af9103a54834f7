"""PACS in and out against a real Orthanc (see pacs_fixture.py): conversion from DICOMweb and
DIMSE equals the local conversion of the same files; export --to STOW-RS and C-STORE round
trips; query; the cache; credentials never shown."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

import dicomrecon
from dicomrecon.cli import app
from dicomrecon.sources.urls import PacsUsageError, parse_url, redact
from pacs_fixture import (CALLING_AET, PASSWORD, SERVED, USER, corpus_uids, orthanc,  # noqa: F401
                          pacs_env)

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("pacs_env")


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def source_url(server, protocol: str, study: str, series: str | None = None) -> str:
    if protocol == "dicomweb":
        return f"{server.dicomweb}/studies/{study}" + (f"/series/{series}" if series else "")
    return f"{server.dimse}/{study}" + (f"/{series}" if series else "")


def assert_no_secret(*texts):
    for t in texts:
        assert PASSWORD not in t


def outputs(folder: Path) -> dict:
    """name -> (array, sidecar) of every volume convert wrote."""
    out = {}
    for nii in sorted(folder.glob("*.nii")):
        side = json.loads(nii.with_suffix(".json").read_text())
        out[nii.stem] = (sitk.GetArrayFromImage(sitk.ReadImage(str(nii))), side)
    return out


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
@pytest.mark.parametrize("folder", SERVED)
def test_convert_from_pacs_equals_local(orthanc, corpus, tmp_path, protocol, folder):
    study, series = corpus_uids(corpus / folder)
    url = source_url(orthanc, protocol, study, series if protocol == "dimse" else None)
    remote = cli("convert", url, "-o", tmp_path / "remote", "-f", "nii")
    assert remote.exit_code == 0, remote.output
    local = cli("convert", corpus / folder, "-o", tmp_path / "local", "-f", "nii")
    assert local.exit_code == 0, local.output
    got, want = outputs(tmp_path / "remote"), outputs(tmp_path / "local")
    assert got and got.keys() == want.keys()
    for name, (array, side) in got.items():
        ref_array, ref_side = want[name]
        assert array.dtype == ref_array.dtype and np.array_equal(array, ref_array), name
        assert np.allclose(side["volume"]["affine_lps"], ref_side["volume"]["affine_lps"],
                           atol=1e-9)
        assert side["reconstruction"] == ref_side["reconstruction"]
        src = side["source"]
        assert src["input"] == url and src["pacs"]["url"] == url
        assert src["pacs"]["study_instance_uid"] == study
        assert src["pacs"]["retrieved_series"] == [series]
        assert src["series_instance_uid"] == series
    report = (tmp_path / "remote" / "dicomrecon-report.json").read_text()
    assert json.loads(report)["input"] == url
    texts = [remote.output, report] + [p.read_text() for p in (tmp_path / "remote").glob("*")
                                       if p.suffix == ".json"]
    assert_no_secret(*texts)


def test_c_move_to_our_own_storage_scp(orthanc, corpus, tmp_path):
    study, series = corpus_uids(corpus / "d2n_mr_jpegls")
    r = cli("convert", source_url(orthanc, "dimse", study, series), "-o", tmp_path / "m",
            "-f", "nii", "--move-port", orthanc.move_port, "--calling-aet", CALLING_AET)
    assert r.exit_code == 0, r.output
    local = dicomrecon.read_volumes(str(corpus / "d2n_mr_jpegls"))
    (name,) = outputs(tmp_path / "m")
    array, side = outputs(tmp_path / "m")[name]
    assert np.array_equal(array, local[0].array)
    assert np.allclose(side["volume"]["affine_lps"], local[0].affine, atol=1e-9)


def test_scan_from_dicomweb_and_the_private_cache_is_removed(orthanc, corpus, tmp_path,
                                                            monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    study, series = corpus_uids(corpus / "d2n_mr_siemens_enhanced_mf")
    r = cli("scan", source_url(orthanc, "dicomweb", study, series), "--json")
    assert r.exit_code == 0, r.output
    (s,) = json.loads(r.stdout)["series"]
    assert s["series_instance_uid"] == series
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("dicomrecon-")]


def test_cache_folder_is_kept_and_reused(orthanc, corpus, tmp_path):
    study, series = corpus_uids(corpus / "d2n_mr_jpegls")
    url = source_url(orthanc, "dimse", study)
    r = cli("convert", url, "-o", tmp_path / "o1", "--cache", tmp_path / "cache")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "cache" / study / series).iterdir())
    assert len(files) == 4 and all(f.suffix == ".dcm" for f in files)
    # kept as the server stores them: JPEG-LS, not transcoded
    import pydicom
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    stamps = [f.stat().st_mtime_ns for f in files]
    r = cli("convert", url, "-o", tmp_path / "o2", "--cache", tmp_path / "cache")
    assert r.exit_code == 0, r.output
    assert [f.stat().st_mtime_ns for f in files] == stamps      # not fetched again


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_query_table_json_and_filters(orthanc, corpus, protocol):
    ct_study, ct_series = corpus_uids(corpus / "ct_philips_s21610_s3010_tilt16p5")
    mf_study, _ = corpus_uids(corpus / "d2n_mr_siemens_enhanced_mf")
    root = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    r = cli("query", root)
    assert r.exit_code == 0, r.output
    assert ct_study in r.stdout and ct_series in r.stdout and mf_study in r.stdout
    r = cli("query", root, "--modality", "CT", "--json")
    assert r.exit_code == 0, r.output
    studies = {s["study_instance_uid"]: s for s in json.loads(r.stdout)}
    assert ct_study in studies and mf_study not in studies
    (ser,) = [s for s in studies[ct_study]["series"] if s["series_instance_uid"] == ct_series]
    assert ser["modality"] == "CT" and ser["instances"] == "58" and ser["series_number"] == "301"
    r = cli("query", root, "--patient-id", "PLASTIC", "--study-date", "20150101-20151231",
            "--json")
    assert {s["study_instance_uid"] for s in json.loads(r.stdout)} == {ct_study}
    r = cli("query", root, "--patient-id", "NOBODY")
    assert r.exit_code == 0 and "no matching study" in r.stdout


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct_volume(corpus, tmp_path_factory):
    """A tilted CT converted locally (resampled), with its sidecar: what export sends."""
    out = tmp_path_factory.mktemp("ct")
    r = cli("convert", corpus / "ct_ge_tilt18p5_varspacing", "-o", out)
    assert r.exit_code == 0, r.output
    (nii,) = out.glob("*.nii.gz")
    return nii


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_export_to_pacs_round_trip(orthanc, corpus, tmp_path, protocol, ct_volume):
    study, _ = corpus_uids(corpus / "ct_ge_tilt18p5_varspacing")
    nii = ct_volume
    dest = orthanc.dicomweb if protocol == "dicomweb" else orthanc.dimse
    r = cli("export", nii, "-o", tmp_path / "dcm", "--to", dest)
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "dcm").iterdir())
    assert f"sent {len(files)} of {len(files)} instance(s) to {dest}" in r.stdout
    import pydicom
    new_series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    assert orthanc.series_instances(new_series) == len(files)     # Orthanc has it all
    q = cli("query", source_url(orthanc, protocol, study), "--json")
    (st,) = json.loads(q.stdout)
    assert new_series in [s["series_instance_uid"] for s in st["series"]]
    back = cli("convert", source_url(orthanc, protocol, study, new_series), "-o",
               tmp_path / "back", "-f", "nii")
    assert back.exit_code == 0, back.output
    (name,) = outputs(tmp_path / "back")
    array, side = outputs(tmp_path / "back")[name]
    exported = Volume_from(nii)
    assert np.array_equal(array, exported[0])                     # exact HU
    assert np.allclose(side["volume"]["affine_lps"], exported[1], atol=1e-4)
    assert_no_secret(r.output, q.output, back.output)


def Volume_from(path):
    img = sitk.ReadImage(str(path))
    vol = dicomrecon.Volume.from_sitk(img)
    return vol.array, vol.affine


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_send_reports_what_was_rejected(orthanc, corpus, tmp_path, protocol):
    """Orthanc refuses one instance (C-STORE: a SOP class it does not know; STOW-RS: no
    SOPClassUID): that one is listed with the reason, the others are accepted, and the outcome
    says not everything arrived."""
    import pydicom
    from dicomrecon.sources.send import send_files
    files = []
    for k, f in enumerate(sorted((corpus / "d2n_mr_jpegls").iterdir())):
        try:
            ds = pydicom.dcmread(f)
        except Exception:
            continue
        ds.SeriesInstanceUID = f"2.25.4242{len(protocol)}"
        ds.SOPInstanceUID = f"2.25.4242{len(protocol)}{k}"
        if not files and protocol == "dimse":
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6.7"
        elif not files:
            del ds.SOPClassUID
        files.append(tmp_path / f"{k}.dcm")
        ds.save_as(files[-1])
    dest = orthanc.dimse if protocol == "dimse" else orthanc.dicomweb
    outcome = send_files(dest, [str(f) for f in files], calling_aet=CALLING_AET)
    assert not outcome.ok and len(outcome.accepted) == len(files) - 1
    (sop, why), = outcome.rejected
    assert sop == str(pydicom.dcmread(files[0]).SOPInstanceUID)
    assert ("SOP class 1.2.3.4.5.6.7" if protocol == "dimse" else "HTTP 400") in why
    assert outcome.lines()[0] == (f"sent {len(files) - 1} of {len(files)} instance(s) to "
                                  f"{dest}; 1 rejected, 0 not sent")
    assert orthanc.series_instances(f"2.25.4242{len(protocol)}") == len(files) - 1


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, base, aet, study, series", [
    ("https://h.org/dicom-web/studies/1.2/series/3.4", "dicomweb", "https://h.org/dicom-web",
     "", "1.2", "3.4"),
    ("http://h:8042/a/b/studies/1.2/", "dicomweb", "http://h:8042/a/b", "", "1.2", None),
    ("http://h/studies/1.2", "dicomweb", "http://h", "", "1.2", None),
    ("dimse://PACS@10.0.0.1:104/1.2/3.4", "dimse", "", "PACS", "1.2", "3.4"),
])
def test_source_urls(text, kind, base, aet, study, series):
    u = parse_url(text)
    assert (u.kind, u.base, u.called_aet, u.study_uid, u.series_uid) == (
        kind, base, aet, study, series)


@pytest.mark.parametrize("text, why", [
    ("http://h/dicom-web", "must end in /studies/"),
    ("http://bob:pw-in-url@h/x/studies/1.2", "credentials are never taken"),
    ("http://h/x/studies/1.2?access_token=pw-in-url", "credentials are never taken"),
    ("dimse://h:104/1.2", "called AE title"),
    ("dimse://A@h/1.2", "needs a port"),
    ("dimse://A@h:104", "dimse://AET@HOST:PORT/<StudyInstanceUID>"),
    ("dimse://A@h:104/1.2/x.y", "not a valid DICOM UID"),
    ("ftp://h/x", "not a PACS URL"),
])
def test_bad_source_urls_are_usage_errors(text, why):
    with pytest.raises(PacsUsageError, match=why.replace("?", r"\?")) as e:
        parse_url(text)
    assert "pw-in-url" not in str(e.value)


def test_credentials_in_a_url_are_refused_and_not_echoed(tmp_path):
    r = cli("convert", "https://bob:pw-in-url@127.0.0.1:1/x/studies/1.2", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "credentials are never taken" in r.output
    assert "pw-in-url" not in r.output and not (tmp_path / "o").exists()
    assert redact("x https://u:p@h/y?t=1") == "x https://***@h/y?***"


def test_netrc_credentials(orthanc, corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("DICOMRECON_DICOMWEB_USER")
    monkeypatch.delenv("DICOMRECON_DICOMWEB_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    study, _ = corpus_uids(corpus / "d2n_mr_siemens_enhanced_mf")
    r = cli("scan", source_url(orthanc, "dicomweb", study))
    assert r.exit_code == 0, r.output
    assert_no_secret(r.output)


def test_credential_precedence_and_nothing_shown(tmp_path, monkeypatch):
    from dicomrecon.errors import PacsError
    from dicomrecon.sources import credentials
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pacs.example login nl password pw-from-netrc\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("DICOMRECON_DICOMWEB_TOKEN", "tok-secret")
    c = credentials.load("pacs.example")
    assert (c.kind, c.secret) == ("bearer", "tok-secret")
    monkeypatch.delenv("DICOMRECON_DICOMWEB_TOKEN")
    c = credentials.load("pacs.example")
    assert (c.kind, c.user, c.secret) == ("basic", USER, PASSWORD)
    monkeypatch.delenv("DICOMRECON_DICOMWEB_PASSWORD")
    with pytest.raises(PacsError, match="DICOMRECON_DICOMWEB_PASSWORD is not set"):
        credentials.load("pacs.example")
    monkeypatch.delenv("DICOMRECON_DICOMWEB_USER")
    c = credentials.load("pacs.example")
    assert (c.kind, c.origin, c.user, c.secret) == ("basic", "netrc", "nl", "pw-from-netrc")
    assert credentials.load("other.example").kind == "none"
    for text in (repr(c), c.describe()):
        assert "pw-from-netrc" not in text


def test_missing_pacs_extra_is_named(orthanc, corpus, tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pynetdicom", None)     # as if not installed
    study, _ = corpus_uids(corpus / "d2n_mr_jpegls")
    r = cli("convert", source_url(orthanc, "dimse", study), "-o", tmp_path / "o")
    assert r.exit_code == 9, r.output
    assert "needs the pynetdicom package" in r.stderr and "dicomrecon[pacs]" in r.stderr


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_batch_takes_pacs_urls_beside_folders(orthanc, corpus, tmp_path, protocol):
    """batch retrieves a URL input first, converts it like convert does, and records the URL."""
    folder = SERVED[0]
    study, series = corpus_uids(corpus / folder)
    url = source_url(orthanc, protocol, study, series if protocol == "dimse" else None)
    local = corpus / "d2n_mr_hitachi_oblique39"
    r = cli("batch", url, str(local), "-o", tmp_path / "b", "-f", "nii", "--workers", "1",
            "--layout", "%n_%d")
    assert r.exit_code == 0, r.output
    ref = cli("convert", url, "-o", tmp_path / "c", "-f", "nii")
    assert ref.exit_code == 0, ref.output
    want = outputs(tmp_path / "c")
    got = outputs(tmp_path / "b")
    assert want and set(want) <= set(got)
    for name, (array, side) in want.items():
        b_array, b_side = got[name]
        assert np.array_equal(b_array, array)
        assert np.allclose(b_side["volume"]["affine_lps"], side["volume"]["affine_lps"])
        assert b_side["source"]["input"] == url and b_side["source"]["pacs"]["url"] == url
    local_sides = [s for n, (_, s) in got.items() if n not in want]
    assert local_sides and all(s["source"]["input"] == str(local) for s in local_sides)
    assert_no_secret(r.output, *[p.read_text() for p in (tmp_path / "b").rglob("*")
                                 if p.suffix in (".json", ".jsonl", ".csv")])
