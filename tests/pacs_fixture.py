"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

:class:`Orthanc` writes a configuration into a temporary folder (free loopback ports, basic
auth with a test user, the DICOMweb plugin, C-GET/C-MOVE/C-STORE allowed for dicomrecon's AE
only, storage in the folder), starts ``Orthanc``, waits until its REST API answers, uploads
DICOM files through the REST API, and stops (or kills) it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

USER, PASSWORD = "tester", "pw-Orth4nc-S3cret"
CALLED_AET, CALLING_AET, MOVE_AET = "ORTHANC", "DICOMRECON", "DRMOVE"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
EXE = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: Orthanc gets SIGKILL when the test process dies (killed by a timeout, say),
    instead of lingering with its ports."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Orthanc:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.http_port, self.dicom_port, self.move_port = free_port(), free_port(), free_port()
        self.proc = None

    # --- addresses
    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.http}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dimse://{CALLED_AET}@127.0.0.1:{self.dicom_port}"

    def config(self) -> dict:
        store = str(self.folder / "db")
        modality = {"Host": "127.0.0.1", "AllowEcho": True, "AllowFind": True,
                    "AllowGet": True, "AllowMove": True, "AllowStore": True}
        return {
            "Name": "dicomrecon-test", "StorageDirectory": store, "IndexDirectory": store,
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": CALLED_AET,
            "DicomCheckCalledAet": True, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
            "StorageCompression": False, "HttpCompressionEnabled": False,
            # only the AEs below may talk DIMSE to this server
            "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {
                "dicomrecon": {"AET": CALLING_AET, "Port": self.move_port, **modality},
                "dicomrecon-move": {"AET": MOVE_AET, "Port": self.move_port, **modality}},
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "SaveJobs": False, "StableAge": 1, "LimitFindResults": 0,
            "LimitFindInstances": 0, "DicomScpTimeout": 30,
        }

    # --- life cycle
    def start(self, timeout: float = 30.0) -> "Orthanc":
        if not os.path.exists(EXE) or not os.path.exists(PLUGIN):
            pytest.fail("Orthanc is not installed (Debian packages orthanc, orthanc-dicomweb): "
                        "apt-get install -y orthanc orthanc-dicomweb")
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen([EXE, str(cfg)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"Orthanc exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.session().get(f"{self.http}/system", timeout=1).ok:
                    return self
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"Orthanc did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        p = self.folder / "orthanc.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    # --- REST
    def session(self):
        import requests
        s = requests.Session()
        s.auth = (USER, PASSWORD)
        s.trust_env = False
        return s

    def upload(self, *folders) -> int:
        """POST every DICOM file of the folders; returns how many Orthanc stored."""
        n = 0
        with self.session() as s:
            for folder in folders:
                for f in sorted(Path(folder).rglob("*")):
                    if f.is_file():
                        r = s.post(f"{self.http}/instances", data=f.read_bytes(), timeout=60)
                        n += r.status_code == 200
        return n

    def series_instances(self, series_uid: str) -> int:
        with self.session() as s:
            r = s.post(f"{self.http}/tools/find", json={"Level": "Instance", "Query": {
                "SeriesInstanceUID": series_uid}}, timeout=30)
            r.raise_for_status()
            return len(r.json())


def corpus_uids(folder) -> tuple:
    """(StudyInstanceUID, SeriesInstanceUID) of the DICOM files of a corpus folder."""
    import pydicom
    for f in sorted(Path(folder).rglob("*")):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        except Exception:
            continue
    raise FileNotFoundError(f"{folder}: no DICOM file")


# Corpus folders the PACS tests serve: an enhanced multi-frame MR, two gantry-tilted CTs (one
# with variable spacing) and a JPEG-LS MR (kept compressed: WADO-RS asks for any syntax).
SERVED = ["d2n_mr_siemens_enhanced_mf", "ct_philips_s21610_s3010_tilt16p5",
          "ct_ge_tilt18p5_varspacing", "d2n_mr_jpegls"]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, corpus):
    """One Orthanc for the session, with the SERVED corpus folders uploaded."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    try:
        stored = server.upload(*[corpus / name for name in SERVED])
        assert stored == 1 + 58 + 28 + 4, server.log()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pacs_env(monkeypatch):
    """The test user's credentials in the environment, as a user would set them."""
    monkeypatch.setenv("DICOMRECON_DICOMWEB_USER", USER)
    monkeypatch.setenv("DICOMRECON_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.delenv("DICOMRECON_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    monkeypatch.setenv("DICOMRECON_PACS_ATTEMPTS", "2")
