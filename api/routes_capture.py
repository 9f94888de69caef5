"""Capture endpoints: upload a page photo (KPPS), read submissions and a TPS's page set."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import capture
from api.auth import Principal
from api.deps import Services, db_session, require, services
from api.models import Region, ReviewItem, Submission
from api.photos import check_header, sniff_content_type
from api.problems import ApiProblem
from api.regions import check_kode_tps

router = APIRouter(prefix="/api/v1", tags=["capture"])

KodeTps = Annotated[str, Path(description="13-digit kode TPS", examples=["3201010001001"])]


class Retake(BaseModel):
    reason: str | None
    detail: str | None = None
    instruction: dict[str, str] | None = None
    detected_template: str | None = None


class SubmissionOut(BaseModel):
    submission_id: str
    kode_tps: str
    form_set: str
    page: int
    template: str
    status: str  # received, reading, read, unreadable, failed
    sha256: str
    size_bytes: int
    created_at: str
    current: bool
    superseded_by: str | None
    attempts: int
    error: str | None
    retake: bool
    retake_reason: Retake | None
    page_status: str | None
    replayed: bool = False
    supersedes: str | None = None
    links: dict[str, str]


class SubmissionDetail(SubmissionOut):
    check: dict[str, Any] | None
    reading: dict[str, Any] | None
    review: list[dict[str, Any]]


def submission_out(s: Submission, **extra: Any) -> dict[str, Any]:
    gate = s.reading if s.status == "unreadable" and s.reading else s.check
    retake = s.status == "unreadable"
    reason = None
    if retake and gate:
        reason = Retake(
            reason=gate.get("reason"),
            detail=gate.get("detail"),
            instruction=gate.get("instruction"),
            detected_template=gate.get("template"),
        )
    return {
        "submission_id": s.id,
        "kode_tps": s.tps_kode,
        "form_set": s.form_set,
        "page": s.page,
        "template": s.template_id,
        "status": s.status,
        "sha256": s.sha256,
        "size_bytes": s.size_bytes,
        "created_at": s.created_at.isoformat(),
        "current": s.superseded_at is None,
        "superseded_by": s.superseded_by_id,
        "attempts": s.attempts,
        "error": s.error,
        "retake": retake,
        "retake_reason": reason,
        "page_status": s.page_status,
        "links": {"self": f"/api/v1/submissions/{s.id}", "photo": f"/api/v1/submissions/{s.id}/photo"},
        **extra,
    }


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, "too_large", f"the photo is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, "too_large", f"the photo is larger than {limit} bytes")
        chunks.append(chunk)
    if size == 0:
        raise ApiProblem(422, "empty_body", "no photo in the request body")
    return b"".join(chunks)


def _check_tps_allowed(db: Session, p: Principal, kode: str) -> None:
    if p.role == "kpps" and p.tps_kode != kode:
        raise ApiProblem(403, "wrong_tps", f"this token uploads for TPS {p.tps_kode} only, not {kode}")
    listed = db.scalar(select(exists().where(Region.level == "tps")))
    if listed and db.get(Region, kode) is None:
        raise ApiProblem(422, "unknown_tps", f"TPS {kode} is not in the loaded TPS list")


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/tps/{kode_tps}/forms/{form_set}/pages/{page}/photo",
    status_code=202,
    response_model=SubmissionOut,
    openapi_extra=UPLOAD_BODY,
    summary="Upload one page photo (body = the JPEG/PNG bytes)",
    responses={413: {"description": "too large"}, 415: {"description": "not an image"}, 422: {"description": "bad input"}},
)
async def upload_photo(
    request: Request,
    response: Response,
    kode_tps: KodeTps,
    form_set: Annotated[str, Path(max_length=64, examples=["ppwp-2024-plano"])],
    page: Annotated[int, Path(ge=1, le=99)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    p: Principal = Depends(require("kpps")),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    check_kode_tps(kode_tps)
    template = capture.slot_template(form_set, page)

    def _allowed() -> None:
        with svc.sessions() as db:
            _check_tps_allowed(db, p, kode_tps)

    await run_in_threadpool(_allowed)
    data = await _read_body(request, svc.settings.max_upload_bytes)
    sha = hashlib.sha256(data).hexdigest()

    def _replay() -> dict[str, Any] | None:
        with svc.sessions() as db:
            prior = capture.find_replay(db, p, kode_tps, template.form_set, template.page, sha, idempotency_key)
            return None if prior is None else submission_out(prior, replayed=True)

    replay = await run_in_threadpool(_replay)
    if replay is not None:
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = replay["links"]["self"]
        return replay

    content_type = sniff_content_type(data)
    check_header(data, svc.settings.max_pixels)
    result = await svc.runner.check(data, f"{kode_tps}-{template.id}", template.id)
    if result is not None and "error" in result:
        err = result["error"]
        status = int(err.get("http_status") or 422)
        raise ApiProblem(status if 400 <= status < 600 else 422, err.get("code") or "bad_input", err.get("message") or "")
    check = None if result is None else result["reading"]

    def _store_and_record() -> dict[str, Any]:
        stored = svc.store.put(data, content_type)  # fsynced before the row that points at it is committed
        with svc.sessions() as db:
            try:
                with db.begin():
                    row, superseded = capture.insert_submission(
                        db,
                        principal=p,
                        kode=kode_tps,
                        template=template,
                        stored=stored,
                        content_type=content_type,
                        key=idempotency_key,
                        check=check,
                        now=svc.now(),
                    )
            except IntegrityError:
                # A concurrent retry of the same upload won the race: answer with its submission.
                with svc.sessions() as db2:
                    prior = capture.find_replay(db2, p, kode_tps, template.form_set, template.page, sha, idempotency_key)
                if prior is not None:
                    return submission_out(prior, replayed=True)
                raise ApiProblem(409, "concurrent_upload", "another photo for this page arrived at the same time; retry")
            return submission_out(row, supersedes=superseded)

    out = await run_in_threadpool(_store_and_record)
    if out["status"] == "received":
        svc.runner.enqueue(out["submission_id"])
    if out.get("replayed"):
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = out["links"]["self"]
    return out


def _get_visible(db: Session, p: Principal, submission_id: str) -> Submission:
    s = db.get(Submission, submission_id)
    if s is None or not p.can_see_tps(s.tps_kode):
        raise ApiProblem(404, "submission_not_found", "no such submission (or not yours to see)")
    return s


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail)
def get_submission(
    submission_id: Annotated[str, Path(max_length=36)],
    p: Principal = Depends(require("kpps", "verifier")),
    db: Session = Depends(db_session),
) -> dict[str, Any]:
    s = _get_visible(db, p, submission_id)
    items = db.scalars(select(ReviewItem).where(ReviewItem.submission_id == s.id).order_by(ReviewItem.id)).all()
    review = [
        {"item_id": i.id, "field": i.field_id, "state": i.state, "reasons": i.reasons, "final_value": i.final_value,
         "final_action": i.final_action}
        for i in items
    ]
    return {**submission_out(s), "check": s.check, "reading": s.reading, "review": review}


@router.get("/submissions/{submission_id}/photo", response_class=FileResponse)
def get_photo(
    submission_id: Annotated[str, Path(max_length=36)],
    p: Principal = Depends(require("kpps", "verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> FileResponse:
    s = _get_visible(db, p, submission_id)
    return FileResponse(svc.store.path(s.storage_name), media_type=s.content_type)


@router.get("/tps/{kode_tps}")
def get_tps(
    kode_tps: KodeTps,
    p: Principal = Depends(require("kpps", "verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The TPS's current page set per form, TPS-level rules across pages, its state, and the full history."""
    from api import tally

    check_kode_tps(kode_tps)
    if not p.can_see_tps(kode_tps):
        raise ApiProblem(404, "tps_not_found", "no such TPS in your scope")
    subs = db.scalars(select(Submission).where(Submission.tps_kode == kode_tps).order_by(Submission.created_at)).all()
    forms = []
    for t in tally.tps_tallies(db, region=kode_tps):
        current = [s for s in subs if s.form_set == t.form_set and s.superseded_at is None]
        forms.append({**tally.tps_json(t), "rules": _tps_rules(current, t.form_set)})
    return tally.envelope(
        svc.now(),
        kode_tps=kode_tps,
        forms=forms,
        history=[submission_out(s) for s in subs],
    )


def _tps_rules(current: list[Submission], form_set: str) -> dict[str, Any]:
    """TPS-level rules across pages, from the trust layer (ocr.tps.read_tps) when it is installed."""
    try:
        from ocr.tps import read_tps
    except ImportError:
        return {"available": False, "detail": "the TPS-level rule engine (ocr.tps) is not installed"}
    from ocr.results import PageReading

    pages = [PageReading.model_validate(s.reading) for s in current if s.reading]
    try:
        result = read_tps(pages, form_set)
    except Exception as e:  # noqa: BLE001 - rules must never break the TPS view
        return {"available": False, "detail": f"TPS rules failed: {type(e).__name__}"}
    dumped = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
    return {"available": True, "result": dumped}
