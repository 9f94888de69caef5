"""End to end with the real reader: synthetic photos -> upload -> read (process pool) -> review -> tally."""

from __future__ import annotations

import pytest

from api_fixtures import KODE_TPS, make_harness

pytestmark = pytest.mark.slow
FS = "ppwp-2024-plano"


def _pages(seed: int) -> list[tuple[int, bytes, dict]]:
    from ocr.synth.corpus import SynthOptions, generate_page

    opts = SynthOptions(megapixels=(3.0, 4.0), force_reason="", force_wrong_page=False, use_shared_data=False,
                        occluder_rate=0.0, nonplanar_rate=0.0, mistake_rate=0.0)
    out = []
    for page in (1, 2, 3):
        data, truth = generate_page(f"{FS}-p{page}", seed, 0, opts)
        out.append((page, data, truth.form.values))
    return out


def test_upload_read_review_tally_with_the_real_reader(tmp_path) -> None:  # noqa: ANN001
    pages = _pages(seed=11)
    truth = pages[0][2]  # "page:field" -> value, the same for every page of the form
    with make_harness(tmp_path, reader="api.readers:PipelineReader", job_executor="process",
                      check_timeout_s=120) as h:
        subs = {}
        for page, data, _ in pages:
            r = h.upload(data, page=page)
            assert r.status_code == 202, r.text
            assert r.json()["retake"] is False, r.json()
            subs[page] = r.json()["submission_id"]
        h.wait_jobs()
        readings = {}
        for page, sid in subs.items():
            got = h.client.get(f"/api/v1/submissions/{sid}", headers=h.auth("kpps")).json()
            assert got["status"] == "read", got.get("error")
            assert got["reading"]["template"] == f"{FS}-p{page}"
            readings[page] = got["reading"]["fields"]

        # Review every queued field with the truth, as two verifiers would (double entry for changed counts).
        reviewed: set[str] = set()
        crops = 0
        while True:
            r = h.client.get("/api/v1/review/next", headers=h.auth("v1"))
            if r.status_code == 204:
                break
            item = r.json()
            key = f"{item['page']}:{item['field_id']}"
            if crops == 0:
                crop = h.client.get(item["crop_url"], headers=h.auth("v1"))
                assert crop.status_code == 200 and crop.content.startswith(b"\x89PNG")
                crops += 1
            body = {"action": "correct", "value": truth[key]}
            d = h.client.post(f"/api/v1/review/items/{item['item_id']}/decision", json=body, headers=h.auth("v1"))
            assert d.status_code == 200, d.text
            if d.json()["state"] == "second_entry":
                h.client.get("/api/v1/review/next", headers=h.auth("v2"))
                d = h.client.post(f"/api/v1/review/items/{item['item_id']}/decision", json=body, headers=h.auth("v2"))
            assert d.json()["state"] == "resolved"
            reviewed.add(key)

        tps = h.client.get("/api/v1/tallies/tps", headers=h.auth("v1")).json()["tps"]
        [mine] = [t for t in tps if t["kode_tps"] == KODE_TPS]
        assert mine["state"] in ("machine_accepted", "verified")
        for key, v in mine["values"].items():
            page, _, fid = key.partition(":")
            if key in reviewed:
                assert v["value"] == truth[key] and v["provenance"] in ("verified", "corrected")
            else:
                # accepted by the machine: the tally shows exactly the machine's reading
                assert v["provenance"] == "machine" and v["value"] == readings[int(page)][fid]["value"]
        [prov] = h.client.get("/api/v1/tallies", params={"level": "provinsi"}, headers=h.auth("v1")).json()["regions"]
        assert prov["code"] == "32" and prov["tps_counted"] == 1
        assert prov["totals"]["2:IV.1"]["value"] == mine["values"]["2:IV.1"]["value"]
        assert h.client.get("/api/v1/admin/audit/verify", headers=h.auth("admin")).json()["ok"] is True
