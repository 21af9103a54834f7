"""Every PACS failure made real against Orthanc: one clear line, exit code 9, no traceback, no
output volume, no credentials shown.  The session's Orthanc is stopped, paused, killed and
restarted here (its storage survives)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dicomrecon.cli import app
from dicomrecon.errors import ExitCode, PacsError
from dicomrecon.sources.fetch import FetchOptions, retrieve
from dicomrecon.sources.urls import parse_url
from pacs_fixture import CALLING_AET, PASSWORD, corpus_uids, orthanc, pacs_env  # noqa: F401

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("pacs_env")
CT = "ct_philips_s21610_s3010_tilt16p5"


def url_for(server, protocol, study, series=None) -> str:
    if protocol == "dicomweb":
        return f"{server.dicomweb}/studies/{study}" + (f"/series/{series}" if series else "")
    return f"{server.dimse}/{study}" + (f"/{series}" if series else "")


def fails(tmp_path, *args, match: str):
    """Run convert; it must fail with exit 9 and one line naming the problem, write nothing."""
    out = tmp_path / "out"
    r = runner.invoke(app, ["convert", *map(str, args), "-o", str(out)])
    assert r.exit_code == ExitCode.PACS, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicomrecon: error: "), r.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in r.output and PASSWORD not in r.output and not r.stdout
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


@pytest.fixture
def ct(corpus):
    return corpus_uids(corpus / CT)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_unknown_study_or_series(orthanc, tmp_path, ct, protocol):
    fails(tmp_path, url_for(orthanc, protocol, "1.2.3.999"), match="no instances found for "
          "study 1.2.3.999")
    fails(tmp_path, url_for(orthanc, protocol, ct[0], "1.2.3.998"), match="no instances found "
          "for series 1.2.3.998")


def test_wrong_password(orthanc, tmp_path, ct, monkeypatch):
    monkeypatch.setenv("DICOMRECON_DICOMWEB_PASSWORD", "wrong-Pa55word")
    line = fails(tmp_path, url_for(orthanc, "dicomweb", *ct), match="HTTP 401 Unauthorized")
    assert "check the credentials" in line and "wrong-Pa55word" not in line
    monkeypatch.delenv("DICOMRECON_DICOMWEB_PASSWORD")
    monkeypatch.delenv("DICOMRECON_DICOMWEB_USER")
    fails(tmp_path, url_for(orthanc, "dicomweb", *ct), match="HTTP 401")   # none at all


def test_wrong_ae_titles(orthanc, tmp_path, ct):
    wrong_called = url_for(orthanc, "dimse", *ct).replace("ORTHANC@", "NOTORTHANC@")
    fails(tmp_path, wrong_called, match="association rejected")
    line = fails(tmp_path, url_for(orthanc, "dimse", *ct), "--calling-aet", "STRANGER",
                 match="association rejected")
    assert "calling AE title 'STRANGER'" in line


def test_c_get_sub_operations_failed(orthanc, tmp_path, ct):
    """Orthanc cannot store a CT on an association that accepts only Secondary Capture."""
    url = parse_url(url_for(orthanc, "dimse", *ct))
    with pytest.raises(PacsError, match=r"sub-operation\(s\) failed") as e:
        retrieve(url, str(tmp_path), FetchOptions(),
                 _sop_classes=["1.2.840.10008.5.1.4.1.1.7"])
    assert "0 of 58 instance(s) had arrived" in str(e.value)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_timeout(orthanc, tmp_path, ct, protocol):
    orthanc.pause()                       # the port accepts, the server never answers
    try:
        t0 = time.monotonic()
        line = fails(tmp_path, url_for(orthanc, protocol, *ct), "--timeout", "1",
                     match="gave up after 2 attempts")
        assert "no answer" in line and time.monotonic() - t0 < 15
    finally:
        orthanc.resume()


def _kill_after_first_instance(server, cache: Path):
    """A thread that kills the server as soon as the first instance lands in the cache."""
    def watch():
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if any(cache.rglob("*.dcm")):
                server.kill()
                return
            time.sleep(0.002)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_server_killed_during_retrieval_then_stopped(orthanc, tmp_path, ct, protocol):
    cache = tmp_path / "cache"
    try:
        watcher = _kill_after_first_instance(orthanc, cache)
        line = fails(tmp_path, url_for(orthanc, protocol, *ct), "--cache", cache,
                     match="instance(s) had arrived, nothing was converted")
        watcher.join()
        arrived = list(cache.rglob("*.dcm"))
        assert 1 <= len(arrived) < 58 and not list(cache.rglob("*.part"))
        assert f"{len(arrived)} of 58" in line
        # stopped: nothing listens any more
        fails(tmp_path, url_for(orthanc, protocol, *ct), match="connection")
    finally:
        orthanc.start()
    # back up, with its storage: the cache completes the retrieval
    r = runner.invoke(app, ["convert", url_for(orthanc, protocol, *ct), "--cache", str(cache),
                            "-o", str(tmp_path / "out2")])
    assert r.exit_code == 0, r.output
    assert len(list(cache.rglob("*.dcm"))) == 58


def test_bearer_token_rejected_and_never_shown(orthanc, tmp_path, ct, monkeypatch):
    monkeypatch.setenv("DICOMRECON_DICOMWEB_TOKEN", "tok-3x4mple-value")
    line = fails(tmp_path, url_for(orthanc, "dicomweb", *ct), match="HTTP 401")
    assert "bearer auth from DICOMRECON_DICOMWEB_TOKEN" in line
    assert "tok-3x4mple-value" not in line


class TlsFront:
    """A TLS terminator (Python's ssl) in front of Orthanc's HTTP port: Debian's Orthanc 1.10
    serves HTTPS that resets every connection under OpenSSL 3, so the test puts a real TLS
    server of its own in front of the real Orthanc."""

    def __init__(self, cert, key, backend_port: int):
        import socket
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.backend = backend_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import socket
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                tls = self.ctx.wrap_socket(conn, server_side=True)
            except OSError:      # the client refused our certificate: that is the point
                conn.close()
                continue
            back = socket.create_connection(("127.0.0.1", self.backend))
            for a, b in ((tls, back), (back, tls)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_tls_verified_by_default_and_ca_bundle_adds_a_ca(orthanc, tmp_path):
    """HTTPS with a self-signed certificate: refused without --ca-bundle, fine with it."""
    import shutil
    import subprocess
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    front = TlsFront(cert, key, orthanc.http_port)
    root = f"https://127.0.0.1:{front.port}/dicom-web"
    try:
        r = runner.invoke(app, ["query", root])
        assert r.exit_code == ExitCode.PACS, r.output
        assert "TLS certificate verification failed" in r.stderr and "--ca-bundle" in r.stderr
        r = runner.invoke(app, ["query", root, "--ca-bundle", str(cert), "--json"])
        assert r.exit_code == 0, r.output
        assert len(json.loads(r.stdout)) >= 4
    finally:
        front.close()


def test_export_to_a_refusing_server_exits_9(orthanc, corpus, tmp_path):
    """The series is written locally, sending fails: one line says so, exit 9."""
    r = runner.invoke(app, ["convert", str(corpus / "d2n_mr_siemens_enhanced_mf"), "-o",
                            str(tmp_path / "c"), "-f", "nii"])
    assert r.exit_code == 0, r.output
    (nii,) = (tmp_path / "c").glob("*.nii")
    r = runner.invoke(app, ["export", str(nii), "-o", str(tmp_path / "d"), "--to",
                            orthanc.dimse, "--calling-aet", "STRANGER"])
    assert r.exit_code == ExitCode.PACS, r.output
    (line,) = r.stderr.strip().splitlines()
    assert "association rejected" in line and "not completely sent" in line
    assert len(list((tmp_path / "d").iterdir())) == 8      # the local series is complete
