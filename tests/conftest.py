"""Shared fixtures: the real corpus (made available by ./data-fetch.sh) and temp folders."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def corpus_path() -> Path:
    """Where data-fetch.sh put the corpus: $DICOMRECON_CORPUS, ./data/corpus, ../shared/corpus."""
    candidates = [os.environ.get("DICOMRECON_CORPUS"), ROOT / "data" / "corpus",
                  ROOT.parent / "shared" / "corpus"]
    for c in candidates:
        if c and (Path(c) / "README.md").is_file():
            return Path(c)
    raise FileNotFoundError("the DICOM corpus is not available: run ./data-fetch.sh first "
                            "(or set DICOMRECON_CORPUS)")


@pytest.fixture(scope="session")
def corpus() -> Path:
    try:
        return corpus_path()
    except FileNotFoundError as exc:  # fail, never skip: the corpus tests are the real check
        pytest.fail(str(exc))


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="tests/test_fuzz.py: run 2,000 seeded cases instead of the CI subset")
    parser.addoption("--fuzz-cases", type=int, default=None,
                     help="tests/test_fuzz.py: number of in-process cases (overrides the default)")
