"""Uploads: durability, idempotency, supersede history, every bad input, roles, and job failures."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from api.models import AuditEvent, Submission
from api_fixtures import KODE_TPS, OTHER_TPS, api, make_photo, page_script  # noqa: F401 - api is a fixture

P2 = "ppwp-2024-plano-p2"


def _photos_on_disk(h) -> list[str]:  # noqa: ANN001
    root = h.svc.settings.photo_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _problem(r, status: int, code: str) -> dict:  # noqa: ANN001
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["status"] == status
    assert "Traceback" not in r.text
    return body


def test_upload_is_stored_hashed_and_read(api) -> None:  # noqa: ANN001
    photo = make_photo(page_script(P2, {"IV.1": 120, "IV.2": 95, "IV.3": 40}))
    r = api.upload(photo)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "received" and body["retake"] is False
    assert r.headers["Location"] == f"/api/v1/submissions/{body['submission_id']}"
    import hashlib

    assert body["sha256"] == hashlib.sha256(photo).hexdigest()
    stored = api.svc.store.path(f"{body['sha256'][:2]}/{body['sha256']}.jpg")
    assert stored.read_bytes() == photo  # the exact bytes, under a server-generated name
    api.wait_jobs()
    got = api.client.get(body["links"]["self"], headers=api.auth("kpps")).json()
    assert got["status"] == "read"
    assert {k: v["value"] for k, v in got["reading"]["fields"].items()} == {"IV.1": 120, "IV.2": 95, "IV.3": 40}
    assert got["attempts"] == 1
    photo_back = api.client.get(body["links"]["photo"], headers=api.auth("kpps"))
    assert photo_back.status_code == 200 and photo_back.content == photo


def test_retry_with_same_key_or_same_bytes_returns_same_submission(api) -> None:  # noqa: ANN001
    photo = make_photo(page_script(P2))
    first = api.upload(photo, key="phone-123-page2")
    again = api.upload(photo, key="phone-123-page2")
    same_bytes_no_key = api.upload(photo)
    assert first.status_code == again.status_code == same_bytes_no_key.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["replayed"] is True
    assert first.json()["submission_id"] == again.json()["submission_id"] == same_bytes_no_key.json()["submission_id"]
    with api.svc.sessions() as db:
        assert db.query(Submission).count() == 1
        assert db.query(AuditEvent).filter_by(action="upload").count() == 1
    # The same key with other bytes is a client bug, not a retry.
    _problem(api.upload(make_photo(page_script(P2)), key="phone-123-page2"), 409, "idempotency_key_reused")


def test_same_photo_for_another_slot_is_refused(api) -> None:  # noqa: ANN001
    photo = make_photo(page_script(P2))
    assert api.upload(photo, page=2).status_code == 202
    _problem(api.upload(photo, page=3), 409, "duplicate_photo")
    _problem(api.upload(photo, who="kpps_other", kode=OTHER_TPS), 409, "duplicate_photo")


def test_new_photo_supersedes_and_history_is_kept(api) -> None:  # noqa: ANN001
    old = api.upload(make_photo(page_script(P2, review={"IV.1": ["low_confidence"]}))).json()
    api.wait_jobs()
    new = api.upload(make_photo(page_script(P2, {"IV.1": 7}))).json()
    api.wait_jobs()
    assert new["supersedes"] == old["submission_id"]
    old_now = api.client.get(old["links"]["self"], headers=api.auth("kpps")).json()
    assert old_now["current"] is False and old_now["superseded_by"] == new["submission_id"]
    assert old_now["reading"] is not None  # the old machine reading is kept
    # the old page's open review item left the queue
    assert [i["state"] for i in old_now["review"]] == ["superseded"]
    assert api.client.get("/api/v1/review/next", headers=api.auth("v1")).status_code == 204
    tps = api.client.get(f"/api/v1/tps/{KODE_TPS}", headers=api.auth("kpps")).json()
    assert [s["submission_id"] for s in tps["history"]] == [old["submission_id"], new["submission_id"]]
    assert tps["forms"][0]["pages"] == {"2": new["submission_id"]}
    assert len(_photos_on_disk(api)) == 2  # never overwritten, never deleted


def test_gate_failure_answers_retake_immediately(api) -> None:  # noqa: ANN001
    r = api.upload(make_photo(page_script(P2, gate="blurry")))
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "unreadable" and body["retake"] is True
    assert body["retake_reason"]["reason"] == "blurry"
    assert "buram" in body["retake_reason"]["instruction"]["id"]


def test_page_in_the_wrong_slot_is_caught(api) -> None:  # noqa: ANN001
    r = api.upload(make_photo(page_script("ppwp-2024-plano-p3")), page=2)
    body = r.json()
    assert body["retake"] is True and body["retake_reason"]["reason"] == "wrong_page"
    assert body["retake_reason"]["detected_template"] == "ppwp-2024-plano-p3"


def _truncated() -> bytes:
    photo = make_photo(page_script(P2), size=(800, 1200))
    return photo[: len(photo) // 2]


def _corrupt() -> bytes:
    photo = bytearray(make_photo(page_script(P2)))
    photo[200:2000] = os.urandom(1800)
    return bytes(photo)


def _bomb() -> bytes:
    # A small PNG that declares 10000 x 6000 pixels (over the 50 MP limit): the header alone must refuse it.
    buf = io.BytesIO()
    Image.new("1", (10000, 6000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "status", "codes"),
    [
        ("text", lambda: b"hello, this is not a photo", 415, {"unsupported_format"}),
        ("pdf", lambda: b"%PDF-1.7\n" + b"0" * 100, 415, {"unsupported_format"}),
        ("truncated", _truncated, 422, {"truncated_image"}),
        ("corrupt", _corrupt, 422, {"corrupt_image", "truncated_image"}),
        ("bomb", _bomb, 413, {"too_many_pixels"}),
        ("empty", lambda: b"", 422, {"empty_body"}),
    ],
)
def test_bad_input_gets_a_stable_code_and_nothing_is_stored(api, name, make, status, codes) -> None:  # noqa: ANN001
    r = api.upload(make())
    assert r.status_code == status, (name, r.text)
    assert r.json()["code"] in codes
    assert _photos_on_disk(api) == []
    with api.svc.sessions() as db:
        assert db.query(Submission).count() == 0


def test_too_large_body(tmp_path) -> None:  # noqa: ANN001
    from api_fixtures import make_harness

    with make_harness(tmp_path, max_upload_bytes=5000) as h:
        _problem(h.upload(make_photo(page_script(P2), size=(900, 1300))), 413, "too_large")
        assert _photos_on_disk(h) == []


@pytest.mark.parametrize(
    ("kode", "form_set", "page", "status", "code"),
    [
        ("32010100010", "ppwp-2024-plano", 2, 422, "bad_kode_tps"),
        ("32010100010xx", "ppwp-2024-plano", 2, 422, "bad_kode_tps"),
        ("3201010001000", "ppwp-2024-plano", 2, 422, "bad_kode_tps"),
        (KODE_TPS, "no-such-form", 2, 422, "unknown_slot"),
        (KODE_TPS, "ppwp-2024-plano", 9, 422, "unknown_slot"),
        (OTHER_TPS, "ppwp-2024-plano", 2, 403, "wrong_tps"),
    ],
)
def test_bad_slot_or_tps(api, kode, form_set, page, status, code) -> None:  # noqa: ANN001
    _problem(api.upload(make_photo(page_script(P2)), kode=kode, form_set=form_set, page=page), status, code)
    assert _photos_on_disk(api) == []


def test_unknown_tps_when_a_tps_list_is_loaded(api) -> None:  # noqa: ANN001
    r = api.client.post("/api/v1/admin/regions", content=f"kode,nama\n32,JAWA BARAT\n{OTHER_TPS},TPS 002\n",
                        headers={**api.auth("admin"), "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"loaded": 2}
    _problem(api.upload(make_photo(page_script(P2))), 422, "unknown_tps")
    assert api.upload(make_photo(page_script(P2)), who="kpps_other", kode=OTHER_TPS).status_code == 202


def test_roles_for_upload_and_reading(api) -> None:  # noqa: ANN001
    photo = make_photo(page_script(P2))
    _problem(api.client.post(f"/api/v1/tps/{KODE_TPS}/forms/ppwp-2024-plano/pages/2/photo", content=photo),
             401, "token_required")
    _problem(api.client.post(f"/api/v1/tps/{KODE_TPS}/forms/ppwp-2024-plano/pages/2/photo", content=photo,
                             headers={"Authorization": "Bearer c1_kpps_forged"}), 401, "bad_token")
    _problem(api.upload(photo, who="v1"), 403, "forbidden_role")
    sid = api.upload(photo).json()["submission_id"]
    # another TPS's officer cannot see it; a verifier outside the region cannot either; the admin can
    _problem(api.client.get(f"/api/v1/submissions/{sid}", headers=api.auth("kpps_other")), 404, "submission_not_found")
    _problem(api.client.get(f"/api/v1/submissions/{sid}", headers=api.auth("v_far")), 404, "submission_not_found")
    assert api.client.get(f"/api/v1/submissions/{sid}", headers=api.auth("v1")).status_code == 200
    assert api.client.get(f"/api/v1/submissions/{sid}", headers=api.auth("admin")).status_code == 200
    # kpps cannot review, verifiers cannot administer
    _problem(api.client.get("/api/v1/review/next", headers=api.auth("kpps")), 403, "forbidden_role")
    _problem(api.client.get("/api/v1/admin/tokens", headers=api.auth("v1")), 403, "forbidden_role")


def test_revoked_token_stops_working(api) -> None:  # noqa: ANN001
    tokens = api.client.get("/api/v1/admin/tokens", headers=api.auth("admin")).json()
    kpps_id = next(t["id"] for t in tokens if t["role"] == "kpps" and t["tps_kode"] == KODE_TPS)
    assert all("token" not in t and len(t["prefix"]) < 20 for t in tokens)  # secrets are never listed
    assert api.client.delete(f"/api/v1/admin/tokens/{kpps_id}", headers=api.auth("admin")).status_code == 204
    _problem(api.upload(make_photo(page_script(P2))), 401, "bad_token")


def test_created_token_is_bound_to_its_tps(api) -> None:  # noqa: ANN001
    r = api.client.post("/api/v1/admin/tokens", json={"role": "kpps", "tps_kode": OTHER_TPS, "label": "TPS 002"},
                        headers=api.auth("admin"))
    assert r.status_code == 201
    api.tokens["new"] = r.json()["token"]
    assert api.upload(make_photo(page_script(P2)), who="new", kode=OTHER_TPS).status_code == 202
    _problem(api.upload(make_photo(page_script(P2)), who="new", kode=KODE_TPS), 403, "wrong_tps")
    _problem(api.client.post("/api/v1/admin/tokens", json={"role": "kpps"}, headers=api.auth("admin")),
             422, "kpps_needs_tps")


def test_crashing_reader_is_retried_then_failed_without_blocking_others(api, tmp_path) -> None:  # noqa: ANN001
    bad = api.upload(make_photo(page_script(P2, crash="raise", marker_dir=str(tmp_path / "m1")))).json()
    good = api.upload(make_photo(page_script("ppwp-2024-plano-p3")), page=3).json()
    api.wait_jobs()
    bad_now = api.client.get(bad["links"]["self"], headers=api.auth("kpps")).json()
    assert bad_now["status"] == "failed"
    assert bad_now["attempts"] == 3 and "reader crashed" in bad_now["error"]
    assert len(list((tmp_path / "m1").iterdir())) == 3
    assert api.client.get(good["links"]["self"], headers=api.auth("kpps")).json()["status"] == "read"
    failed = api.client.get("/api/v1/admin/jobs/failed", headers=api.auth("admin")).json()
    assert [f["submission_id"] for f in failed] == [bad["submission_id"]]


def test_reader_crash_once_then_success(api, tmp_path) -> None:  # noqa: ANN001
    sub = api.upload(make_photo(page_script(P2, crash="raise", crash_times=1, marker_dir=str(tmp_path / "m")))).json()
    api.wait_jobs()
    got = api.client.get(sub["links"]["self"], headers=api.auth("kpps")).json()
    assert got["status"] == "read" and got["attempts"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["exit", "hang"])
def test_dead_or_stuck_worker_is_replaced_and_the_reading_retried(tmp_path, crash) -> None:  # noqa: ANN001
    """A worker that dies hard (os._exit) breaks the process pool; one that never finishes is stopped after
    read_timeout_s. Either way the runner replaces the pool and the attempt is retried."""
    from api_fixtures import make_harness

    with make_harness(tmp_path, job_executor="process", check_timeout_s=60, read_timeout_s=3) as h:
        sub = h.upload(make_photo(page_script(P2, crash=crash, crash_times=1, marker_dir=str(tmp_path / "m")))).json()
        h.wait_jobs()
        got = h.client.get(sub["links"]["self"], headers=h.auth("kpps")).json()
        assert got["status"] == "read", got
        assert got["attempts"] == 2


@pytest.mark.slow
def test_a_quick_check_that_hangs_does_not_hold_up_the_next_one(tmp_path) -> None:  # noqa: ANN001
    """The upload answers without the check after check_timeout_s, and the stuck check's worker is stopped, so the
    next upload gets its check (one check worker: it would otherwise wait behind the stuck one and time out too)."""
    from api_fixtures import make_harness

    with make_harness(tmp_path, job_executor="process", check_timeout_s=4) as h:
        stuck = h.upload(make_photo(page_script(P2, check_hang=True))).json()
        fine = h.upload(make_photo(page_script(P2))).json()
        h.wait_jobs()
        got = {k: h.client.get(sub["links"]["self"], headers=h.auth("kpps")).json() for k, sub in
               (("stuck", stuck), ("fine", fine))}
        assert got["stuck"]["check"] is None
        assert got["fine"]["check"] is not None and got["fine"]["check"]["status"] == "read"


def _gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped counts: it runs nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="checks worker processes through /proc (Linux)")
def test_stopping_the_service_stops_a_stuck_reading_and_the_next_start_reads_it(tmp_path) -> None:  # noqa: ANN001
    """The service stops without waiting for a reading that never ends: its worker is stopped, and the submission,
    still pending, is read when the service starts again."""
    from api_fixtures import make_harness

    marker = tmp_path / "m"
    with make_harness(tmp_path, wait_on_exit=False, job_executor="process", read_timeout_s=3600) as h:
        sid = h.upload(make_photo(page_script(P2, crash="hang", crash_times=1, marker_dir=str(marker)))).json()[
            "submission_id"]
        for _ in range(600):  # the reading has started in its worker (a spawned process: seconds)
            if marker.is_dir() and any(p.read_text() for p in marker.iterdir()):
                break
            time.sleep(0.1)
        (attempt,) = marker.iterdir()
        pid = int(attempt.read_text())
        # Ctrl-C in a terminal reaches every process of the group: a worker leaves it to the server.
        os.kill(pid, signal.SIGINT)
        time.sleep(2)
        assert not _gone(pid) and len(list(marker.iterdir())) == 1  # still reading: not interrupted, not retried
    for _ in range(100):  # terminated at stop; reaped a moment later
        if _gone(pid):
            break
        time.sleep(0.1)
    assert _gone(pid)
    with make_harness(tmp_path) as h2:
        h2.wait_jobs()
        with h2.svc.sessions() as db:
            got = db.get(Submission, sid)
            assert got.status == "read"


def test_unfinished_jobs_resume_after_restart(tmp_path) -> None:  # noqa: ANN001
    """A submission left `reading` by a stopped server is read when the service starts again."""
    from api_fixtures import make_harness

    with make_harness(tmp_path) as h:
        sid = h.upload(make_photo(page_script(P2))).json()["submission_id"]
        h.wait_jobs()
        with h.svc.sessions() as db, db.begin():
            s = db.get(Submission, sid)
            s.status, s.reading = "reading", None  # as if the server died mid-read
    with make_harness(tmp_path) as h2:
        h2.wait_jobs()
        with h2.svc.sessions() as db:
            assert db.get(Submission, sid).status == "read"
