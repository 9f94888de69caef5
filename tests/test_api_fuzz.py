"""Property-based fuzz of the OpenAPI schema (schemathesis): no request, however odd, gets a 5xx.

Runs as the admin (so every operation is reachable past authentication) on a fresh service with a scripted fake
reader. Examples per operation are bounded to keep the suite fast.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from api.app import create_app  # noqa: E402
from api.auth import create_token  # noqa: E402
from api.settings import ServiceSettings  # noqa: E402
from api_fixtures import FAKE_READER, Clock  # noqa: E402

_DATA = Path(tempfile.mkdtemp(prefix="c1ocr-fuzz-"))
_CLOCK = Clock()
APP = create_app(ServiceSettings(data_dir=_DATA, job_executor="thread", reader=FAKE_READER, clock=_CLOCK))
with APP.state.services.sessions() as _db, _db.begin():
    _, ADMIN = create_token(_db, "admin", label="fuzz", now=_CLOCK())

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case) -> None:  # noqa: ANN001
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=[not_a_server_error])
