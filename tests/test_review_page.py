"""The review page in headless Chromium: keyboard-only review of a queue (Debian's /usr/bin/chromium)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from api_fixtures import make_harness, make_photo, page_script

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed at /usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):  # noqa: ANN001, ANN201
    """The app behind a real uvicorn on 127.0.0.1, with a queue of three fields to review."""
    import uvicorn

    with make_harness(tmp_path) as h:
        h.upload(make_photo(page_script("ppwp-2024-plano-p2", {"IV.1": 941, "IV.2": 86, "IV.3": 40},
                                        {"IV.1": ["low_confidence"], "IV.2": ["omr_disagrees"],
                                         "IV.3": ["low_confidence"]})))
        h.wait_jobs()
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(h.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield h, base
        server.should_exit = True
        thread.join(timeout=10)


def test_keyboard_review_flow(served) -> None:  # noqa: ANN001
    h, base = served
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(base + "/review")
            page.fill("#token", h.tokens["v1"])
            page.keyboard.press("Enter")
            page.wait_for_selector("#work:not([hidden])")
            assert page.input_value("#value") == "941"  # pre-filled with the machine value, selected
            assert page.inner_text("#field-id") == "IV.1"
            page.wait_for_function("document.getElementById('crop').naturalWidth > 0")
            assert "886" not in page.inner_text("#candidates") and "1741" in page.inner_text("#candidates")

            # zoom and the page view are keyboard toggles
            width = page.evaluate("document.getElementById('crop').getBoundingClientRect().width")
            page.keyboard.press("+")
            assert page.evaluate("document.getElementById('crop').getBoundingClientRect().width") > width
            page.keyboard.press("p")
            assert page.is_visible("#page-img") and not page.is_visible("#crop")
            page.keyboard.press("p")

            # typing digits replaces the selected value; Enter saves a correction
            page.keyboard.type("62")
            assert page.input_value("#value") == "62"
            page.keyboard.press("Enter")
            page.wait_for_function("document.getElementById('field-id').textContent === 'IV.2'")
            assert "correct 62" in page.inner_text("#status")

            page.keyboard.press("Enter")  # approve the machine's 86
            page.wait_for_function("document.getElementById('field-id').textContent === 'IV.3'")
            page.keyboard.press("u")  # unreadable
            page.wait_for_function("document.getElementById('status').textContent.includes('empty')")

            page.keyboard.press("b")  # back to the previous item, read only
            page.wait_for_selector("#decided:not([hidden])")
            assert page.inner_text("#field-id") == "IV.3"
            assert "unreadable" in page.inner_text("#decided")
        finally:
            browser.close()

    with h.svc.sessions() as db:
        from api.models import Decision, ReviewItem

        items = {i.field_id: i for i in db.query(ReviewItem)}
        assert items["IV.1"].state == "second_entry"  # a count correction waits for a second, blind entry
        assert (items["IV.2"].state, items["IV.2"].final_value) == ("resolved", 86)
        assert (items["IV.3"].state, items["IV.3"].final_action) == ("resolved", "unreadable")
        assert db.query(Decision).count() == 3
