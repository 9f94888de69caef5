"""Shared fixtures for the service tests: a scripted fake reader, photo makers, an app with tokens.

The fake reader stands in for ocr.pipeline where a test needs a chosen outcome (a field that needs review, a gate
failure, a crashing job). Its script travels inside the photo itself (JPEG comment / PNG text), so every photo is a
real, decodable image and the reader decides only from the bytes it was given, as the real one does.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocr.errors import RETAKE_INSTRUCTIONS, UnreadableReason
from ocr.results import Candidate, FieldReading, Instruction, LocationInfo, PageReading, RuleResult
from ocr.synth.tally import draw_form_tally
from ocr.templates import get_form_set, get_template

FAKE_READER = "api_fixtures:FakeReader"
KODE_TPS = "3201010001001"  # Jawa Barat / Bogor / kec. 01 / desa 0001 / TPS 001
OTHER_TPS = "3201010001002"
FAR_TPS = "3501010001001"  # Jawa Timur


# ---------------------------------------------------------------------------------------------------------- photos
def make_photo(script: dict[str, Any] | None, *, fmt: str = "JPEG", size: tuple[int, int] = (600, 900)) -> bytes:
    """A real image whose metadata carries the fake reader's script (plus a nonce so every photo is new bytes)."""
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    d.rectangle([10, 10, size[0] - 10, size[1] - 10], outline="black", width=3)
    buf = io.BytesIO()
    text = json.dumps({**(script or {}), "nonce": uuid.uuid4().hex}) if script is not None else None
    if fmt == "JPEG":
        im.save(buf, "JPEG", quality=80, **({"comment": text.encode()} if text else {}))
    else:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if text:
            info.add_text("c1ocr-fake", text)
        im.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def page_script(template_id: str, values: dict[str, int] | None = None, review: dict[str, list[str]] | None = None,
                **extra: Any) -> dict[str, Any]:
    return {"template": template_id, "values": values or {}, "review": review or {}, **extra}


# ---------------------------------------------------------------------------------------------------- fake reader
def _decode(data: bytes) -> Image.Image:
    from ocr.load import load_image

    load_image(data)  # the real load stage: corrupt, truncated and oversized bytes fail here as in production
    return Image.open(io.BytesIO(data))


def _script(im: Image.Image) -> dict[str, Any] | None:
    raw = im.info.get("comment") or im.info.get("c1ocr-fake")
    if not raw:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _unreadable(name: str, sha: str, reason: UnreadableReason, expected: str | None, template: str | None) -> PageReading:
    idn, en = RETAKE_INSTRUCTIONS[reason]
    return PageReading(image=name, sha256=sha, status="unreadable", reason=reason.value, detail="fake reader",
                       instruction=Instruction(id=idn, en=en), template=template, expected_template=expected,
                       engine="fake", page_status="unreadable")


@lru_cache(maxsize=None)
def consistent_values(form_set: str) -> dict[str, int]:
    """One consistent station for a form set ("<page>:<field id>" -> value): what the fake reader reads where a script
    names no value, so that a TPS of default pages keeps every rule, within a page and across pages."""
    return draw_form_tally(np.random.default_rng(0), get_form_set(form_set).pages[0].template).values


def _default_value(template_id: str, field_id: str) -> int:
    t = get_template(template_id)
    return consistent_values(t.form_set)[f"{t.page}:{field_id}"]


class FakeReader:
    def _gate(self, data: bytes, image_name: str, expected: str | None) -> tuple[PageReading | None, dict, Image.Image]:
        import hashlib

        im = _decode(data)
        sha = hashlib.sha256(data).hexdigest()
        script = _script(im)
        if script is None:
            return _unreadable(image_name, sha, UnreadableReason.NOT_FOUND, expected, None), {}, im
        if script.get("gate"):
            return _unreadable(image_name, sha, UnreadableReason(script["gate"]), expected, script["template"]), script, im
        if expected and script["template"] != expected:
            return _unreadable(image_name, sha, UnreadableReason.WRONG_PAGE, expected, script["template"]), script, im
        return None, script, im

    def check(self, data: bytes, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        bad, script, im = self._gate(data, image_name, expected_template)
        if bad is not None:
            return bad
        if script.get("check_hang"):
            time.sleep(3600)  # a quick check that never finishes
        return PageReading(image=image_name, status="read", template=script["template"], engine="fake",
                           expected_template=expected_template, location=_location(im))

    def read(self, path: Path, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        data = Path(path).read_bytes()
        bad, script, im = self._gate(data, image_name, expected_template)
        if bad is not None:
            return bad
        crash = script.get("crash")
        if crash:
            marker_dir = Path(script["marker_dir"])
            marker_dir.mkdir(parents=True, exist_ok=True)
            n = len(list(marker_dir.iterdir()))
            (marker_dir / f"attempt-{n}").write_text(str(os.getpid()))  # the worker's pid: a test may check it stops
            if n < int(script.get("crash_times", 99)):
                if crash == "exit":
                    os._exit(3)  # a worker dying hard (segfault, OOM kill)
                if crash == "hang":
                    time.sleep(3600)  # a reading that never finishes (it once did: a 15,000 px blur)
                raise RuntimeError("reader crashed")
        t = get_template(script["template"])
        fields = {}
        for spec in t.fields:
            value = int(script["values"].get(spec.id, _default_value(t.id, spec.id)))
            text = f"{value:0{len(spec.boxes)}d}"
            reasons = script["review"].get(spec.id)
            conf = 0.6 if reasons else 0.995
            fields[spec.id] = FieldReading(
                id=spec.id, label=spec.label, value=value, text=text, confidence=conf,
                status="needs_review" if reasons else "accepted", reasons=list(reasons or []),
                alternatives=[Candidate(char=str(value + 800), p=0.3)] if reasons else [],
            )
        page_status = "needs_review" if script["review"] else "accepted"
        return PageReading(image=image_name, status="read", template=t.id, template_version=t.version,
                           expected_template=expected_template, engine="fake", page_status=page_status,
                           fields=fields, rules=[RuleResult(**r) for r in script.get("rules", [])],
                           location=_location(im), reader_version="fake-1")


def _location(im: Image.Image) -> LocationInfo:
    w, h = im.size  # the fake "photo" is the page itself, edge to edge
    return LocationInfo(method="page_edges", page_corners_px=[(0, 0), (w, 0), (w, h), (0, h)], px_per_mm=1.0)


# ------------------------------------------------------------------------------------------------------ the app
@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2024, 2, 14, 13, 0, tzinfo=timezone.utc))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class ApiHarness:
    client: Any
    app: Any
    clock: Clock
    tokens: dict[str, str]

    @property
    def svc(self):  # noqa: ANN201
        return self.app.state.services

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def upload(self, photo: bytes, *, who: str = "kpps", kode: str = KODE_TPS, form_set: str = "ppwp-2024-plano",
               page: int = 2, key: str | None = None, content_type: str = "image/jpeg"):  # noqa: ANN201
        headers = {**self.auth(who), "Content-Type": content_type}
        if key:
            headers["Idempotency-Key"] = key
        return self.client.post(f"/api/v1/tps/{kode}/forms/{form_set}/pages/{page}/photo", content=photo,
                                headers=headers)

    def wait_jobs(self) -> None:
        self.client.portal.call(self.svc.runner.wait_idle)

    def make_token(self, name: str, role: str, **kw: Any) -> str:
        from api import auth

        with self.svc.sessions() as db, db.begin():
            _, secret = auth.create_token(db, role, now=self.clock(), **kw)
        self.tokens[name] = secret
        return secret


def make_harness(tmp_path: Path, wait_on_exit: bool = True, **settings: Any):  # noqa: ANN201 - yields ApiHarness
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ServiceSettings

    @contextmanager
    def _cm():
        clock = Clock()
        opts = {"data_dir": tmp_path / "data", "job_executor": "thread", "reader": FAKE_READER, "clock": clock,
                "job_retry_wait_s": 0.01, **settings}
        app = create_app(ServiceSettings(**opts))
        with TestClient(app, raise_server_exceptions=False) as client:
            h = ApiHarness(client=client, app=app, clock=clock, tokens={})
            h.make_token("admin", "admin", label="test admin")
            h.make_token("kpps", "kpps", tps_kode=KODE_TPS)
            h.make_token("kpps_other", "kpps", tps_kode=OTHER_TPS)
            h.make_token("v1", "verifier", region_scope="32")
            h.make_token("v2", "verifier", region_scope="32")
            h.make_token("v3", "verifier", region_scope="3201")
            h.make_token("v_far", "verifier", region_scope="35")
            yield h
            if wait_on_exit:
                h.wait_jobs()

    return _cm()


@pytest.fixture
def api(tmp_path: Path):  # noqa: ANN201
    with make_harness(tmp_path) as h:
        yield h
