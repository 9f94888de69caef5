"""The hash-chained audit log: what it records, verification, and tamper detection (API and CLI)."""

from __future__ import annotations

from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import audit_app
from api.models import AuditEvent
from api_fixtures import api, make_photo, page_script  # noqa: F401 - api is a fixture


def _activity(api) -> None:  # noqa: ANN001
    api.upload(make_photo(page_script("ppwp-2024-plano-p2", review={"IV.1": ["low_confidence"]})))
    api.wait_jobs()
    item = api.client.get("/api/v1/review/next", headers=api.auth("v1")).json()
    api.client.post(f"/api/v1/review/items/{item['item_id']}/decision", json={"action": "approve"},
                    headers=api.auth("v1"))
    api.client.patch("/api/v1/admin/config", json={"lease_seconds": 300}, headers=api.auth("admin"))


def test_log_records_uploads_decisions_and_threshold_changes(api) -> None:  # noqa: ANN001
    _activity(api)
    with api.svc.sessions() as db:
        actions = [e.action for e in db.query(AuditEvent).order_by(AuditEvent.seq)]
    assert actions == ["upload", "review_decision", "config_change"]
    r = api.client.get("/api/v1/admin/audit/verify", headers=api.auth("admin")).json()
    assert r["ok"] is True and r["events"] == 3


def test_tampering_is_detected(api) -> None:  # noqa: ANN001
    _activity(api)
    with api.svc.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET payload = replace(payload, 'approve', 'correct') WHERE seq = 2"))
    r = api.client.get("/api/v1/admin/audit/verify", headers=api.auth("admin")).json()
    assert r["ok"] is False and r["first_bad_seq"] == 2 and "altered" in r["problem"]


def test_deleting_the_last_event_is_detected(api) -> None:  # noqa: ANN001
    _activity(api)
    with api.svc.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 3"))
    r = api.client.get("/api/v1/admin/audit/verify", headers=api.auth("admin")).json()
    assert r["ok"] is False and "head" in r["problem"]


def test_cli_audit_verify(api) -> None:  # noqa: ANN001
    _activity(api)
    data_dir = str(api.svc.settings.data_dir)
    ok = CliRunner().invoke(audit_app, ["verify", "--data-dir", data_dir])
    assert ok.exit_code == 0, ok.output
    assert "3 events" in ok.output
    with api.svc.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'token:999' WHERE seq = 1"))
    bad = CliRunner().invoke(audit_app, ["verify", "--data-dir", data_dir])
    assert bad.exit_code == 1 and "seq 1" in bad.output


def test_cli_create_token_rejects_bad_options_with_a_code(tmp_path) -> None:  # noqa: ANN001
    from api.cli import admin_app

    long_label = "x" * 201  # TokenIn allows 200 characters
    res = CliRunner().invoke(admin_app, ["create-token", "--role", "verifier", "--label", long_label,
                                         "--data-dir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "[invalid_request]" in res.output and "--label" in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    ok = CliRunner().invoke(admin_app, ["create-token", "--role", "verifier", "--data-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "c1_verifier_" in ok.output
