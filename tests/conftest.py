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
