"""Problem-details errors (RFC 9457): every error the API returns is `application/problem+json` with a stable `code`.

Never a traceback: unexpected exceptions become a generic 500 problem and are logged server-side.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocr.errors import C1Error

log = logging.getLogger("c1ocr.api")

PROBLEM_TYPE_BASE = "https://c1ocr.example/problems/"  # documentation anchors, not fetched by anything


class ApiProblem(Exception):
    """An expected request failure with a stable machine code."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None, **extra: object):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ")
        self.extra = extra


def problem_response(status: int, code: str, detail: str, title: str | None = None, **extra: object) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or code.replace("_", " "),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.title, **exc.extra)

    @app.exception_handler(C1Error)
    async def _c1_error(_request: Request, exc: C1Error) -> JSONResponse:
        status = exc.http_status
        if status >= 500:
            log.error("reader error %s: %s", exc.code, exc.message)
        return problem_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return problem_response(422, "invalid_request", "the request does not match the API schema", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "internal error; it has been logged")
