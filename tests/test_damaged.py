"""Damaged files never crash the reader: each is read, or skipped with a reason."""

import random

import pytest

from dicomrecon.cli import app
from dicomrecon.header_model import SkipFile
from dicomrecon.headers import read_headers
from dicomrecon.synthetic import SeriesSpec, write_enhanced, write_series
from typer.testing import CliRunner

# pydicom warns about the values these tests damage on purpose
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    single = write_series(SeriesSpec(n_slices=1, extra_tags={"ImageComments": "x" * 40}), d / "s")[0]
    enh = write_enhanced(SeriesSpec(n_slices=3), str(d / "e" / "enh.dcm"))
    return [single, enh]


def outcome(path):
    try:
        read_headers(str(path))
        return "read"
    except SkipFile as exc:
        assert str(exc).startswith(str(path)), exc  # the reason names the file
        return "skipped"


@pytest.mark.parametrize("which", [0, 1])
def test_truncated_anywhere(tmp_path, sources, which):
    data = open(sources[which], "rb").read()
    cuts = sorted({*range(0, 400, 7), *range(400, len(data), max(1, len(data) // 60))})
    seen = set()
    for cut in cuts:
        p = tmp_path / f"cut{cut}"
        p.write_bytes(data[:cut])
        seen.add(outcome(p))
    assert "skipped" in seen  # truncation is noticed (pixel data short, header cut)


@pytest.mark.parametrize("which", [0, 1])
def test_random_byte_corruption(tmp_path, sources, which):
    data = bytearray(open(sources[which], "rb").read())
    rng = random.Random(which)
    header_end = min(len(data), 4000)
    for i in range(150):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(128, header_end)] = rng.randrange(256)
        p = tmp_path / f"bad{i}"
        p.write_bytes(bytes(bad))
        outcome(p)


def test_cli_on_a_folder_of_damaged_files_has_no_traceback(tmp_path, sources):
    data = open(sources[0], "rb").read()
    rng = random.Random(7)
    for i in range(40):
        bad = bytearray(data[: rng.randrange(300, len(data))])
        for _ in range(4):
            bad[rng.randrange(128, min(len(bad), 2000))] = rng.randrange(256)
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"f{i}").write_bytes(bytes(bad))
    r = CliRunner().invoke(app, ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    assert r.exit_code in (0, 3, 4, 5), r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
