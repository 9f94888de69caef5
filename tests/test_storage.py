"""Storage: the photo store, the migrations, and the service core on PostgreSQL (skipped when it is not reachable)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from sqlalchemy import create_engine, text

from api.db import make_engine, migrate
from api.models import Base
from api.storage import PhotoStore
from api_fixtures import make_harness, make_photo, page_script

PG_ADMIN_URL = os.environ.get("C1OCR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def test_store_is_content_addressed_and_never_overwrites(tmp_path) -> None:  # noqa: ANN001
    store = PhotoStore(tmp_path / "photos")
    a = store.put(b"\xff\xd8\xff" + b"a" * 100, "image/jpeg")
    again = store.put(b"\xff\xd8\xff" + b"a" * 100, "image/jpeg")
    b = store.put(b"\x89PNG\r\n\x1a\n" + b"b" * 100, "image/png")
    assert a == again and a.storage_name.endswith(".jpg") and b.storage_name.endswith(".png")
    assert a.storage_name == f"{a.sha256[:2]}/{a.sha256}.jpg"
    assert store.read(a.storage_name) == b"\xff\xd8\xff" + b"a" * 100
    assert not list((tmp_path / "photos").rglob(".incoming-*"))  # no temporary files left behind
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_migrations_match_the_models(tmp_path) -> None:  # noqa: ANN001
    """The Alembic history creates exactly the schema the models describe (no forgotten migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        mode = conn.execute(text("PRAGMA journal_mode")).scalar()
    assert diff == []
    assert mode == "wal"


def _pg_database():  # noqa: ANN202
    try:
        import psycopg  # noqa: F401

        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(e).__name__}")
    name = f"c1ocr_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return admin, name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_url():  # noqa: ANN201
    admin, name, url = _pg_database()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_core_flow_on_postgresql(tmp_path, pg_url) -> None:  # noqa: ANN001
    with make_harness(tmp_path, database_url=pg_url) as h:
        assert h.svc.engine.dialect.name == "postgresql"
        photo = make_photo(page_script("ppwp-2024-plano-p2", {"IV.1": 941}, {"IV.1": ["low_confidence"]}))
        first = h.upload(photo, key="k1").json()
        assert h.upload(photo, key="k1").json()["submission_id"] == first["submission_id"]
        h.wait_jobs()
        newer = h.upload(make_photo(page_script("ppwp-2024-plano-p2", {"IV.1": 941}, {"IV.1": ["low_confidence"]})))
        assert newer.json()["supersedes"] == first["submission_id"]
        h.wait_jobs()

        # Two verifiers race for the one open item: exactly one gets the lease.
        results: dict[str, int] = {}

        def grab(who: str) -> None:
            results[who] = h.client.get("/api/v1/review/next", headers=h.auth(who)).status_code

        threads = [threading.Thread(target=grab, args=(w,)) for w in ("v1", "v2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results.values()) == [200, 204]
        winner = next(w for w, s in results.items() if s == 200)
        other = "v2" if winner == "v1" else "v1"
        item = h.client.get("/api/v1/review/next", headers=h.auth(winner)).json()
        h.client.post(f"/api/v1/review/items/{item['item_id']}/decision", json={"action": "correct", "value": 62},
                      headers=h.auth(winner))
        h.client.get("/api/v1/review/next", headers=h.auth(other))
        r = h.client.post(f"/api/v1/review/items/{item['item_id']}/decision", json={"action": "correct", "value": 62},
                          headers=h.auth(other))
        assert r.json()["final"] == {"action": "correct", "value": 62}
        verify = h.client.get("/api/v1/admin/audit/verify", headers=h.auth("admin")).json()
        assert verify["ok"] and verify["events"] == 4  # 2 uploads, 2 decisions
        [region] = h.client.get("/api/v1/tallies", headers=h.auth("v1")).json()["regions"]
        assert region["tps_states"]["incomplete"] == 1  # pages 1 and 3 are missing


def test_concurrent_audit_appends_keep_one_chain(tmp_path, pg_url) -> None:  # noqa: ANN001
    from datetime import datetime, timezone

    from api import audit
    from api.db import make_sessionmaker

    engine = make_engine(pg_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)

    def writer(n: int) -> None:
        for i in range(10):
            with sessions() as db, db.begin():
                audit.append(db, actor=f"w{n}", action="test", subject=str(i), payload={"i": i},
                             now=datetime.now(timezone.utc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with sessions() as db:
        r = audit.verify(db)
    engine.dispose()
    assert r.ok and r.events == 40
