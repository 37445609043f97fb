"""Shared test fixtures. Tests run offline, on small images."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GZ1_DIR = PROJECT_ROOT.parent / "shared" / "data" / "gz1"


@pytest.fixture
def gz1_dir():
    """The shared real-SDSS Galaxy Zoo 1 cutouts; the test is skipped when absent."""
    if not (GZ1_DIR / "labels.csv").is_file():
        pytest.skip(f"shared Galaxy Zoo data not found at {GZ1_DIR}")
    return GZ1_DIR
