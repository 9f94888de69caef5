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


# Under CI (.ci/run sets CI=true) a test skipped because a local service or browser is missing is a failure: CI's
# machine has them, so such a skip means the install or start-up step is broken.
_SERVICE_WORDS = ("postgres", "redis", "rabbitmq", "chromium", "chromedriver", "tesseract")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or not rep.skipped:
        return
    reason = str(rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr).lower()
    if any(w in reason for w in _SERVICE_WORDS):
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI, which must provide it: {reason}"
