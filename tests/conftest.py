"""Shared test helpers.

Tests that need ../shared/data (real forms, MNIST, fonts) use the `shared_data` fixture, which skips with a reason when
the data is absent (a fresh clone on a laptop). Tests that need local services skip likewise, except under CI where
.ci/run turns such skips into failures (see .ci/run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("C1OCR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "election_forms").is_dir():
        pytest.skip(f"shared data not found at {d} (set C1OCR_SHARED_DATA); real-form checks skipped")
    return d


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return REPO / "samples"
