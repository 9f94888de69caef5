"""The FastAPI application factory: `create_app(settings)`.

    uvicorn --factory api.app:create_app      # or: c1ocr serve
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from api import capture, runtime_config
from api.db import make_engine, make_sessionmaker, migrate
from api.deps import Services
from api.jobs import JobRunner, LocalJobRunner
from api.problems import install_problem_handlers
from api.settings import ServiceSettings
from api.storage import PhotoStore

STATIC_DIR = Path(str(resources.files("api") / "static"))


def build_services(settings: ServiceSettings, runner: JobRunner | None = None) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    sessions = make_sessionmaker(engine)
    store = PhotoStore(settings.photo_dir)

    def policy(db: Session) -> capture.ReviewPolicy:
        return capture.ReviewPolicy(runtime_config.current(db, settings).review_below_confidence)

    if runner is None:
        runner = LocalJobRunner(settings, capture.DbJobStore(sessions, store, settings.clock, policy))
    return Services(settings=settings, engine=engine, sessions=sessions, store=store, runner=runner)


def create_app(settings: ServiceSettings | None = None, *, runner: JobRunner | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    svc = build_services(settings, runner)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await svc.runner.start()
        try:
            yield
        finally:
            await svc.runner.stop()
            svc.engine.dispose()

    app = FastAPI(
        title="c1ocr service",
        version="0.1.0",
        description=(
            "Uploads of C.Hasil page photos, machine readings, review, and PROVISIONAL tallies. "
            "Provisional numbers are not the official result: that is the KPU's pleno."
        ),
        lifespan=lifespan,
    )
    app.state.services = svc
    install_problem_handlers(app)

    from api import routes_admin, routes_capture, routes_review, routes_tally

    for module in (routes_capture, routes_review, routes_tally, routes_admin):
        app.include_router(module.router)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/review")

    @app.get("/review", include_in_schema=False)
    def review_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "review.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
