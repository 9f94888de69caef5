"""The page reader the service runs, behind a small interface so tests (and demos) can inject another one.

Reader functions run inside worker processes: they take plain arguments, return plain JSON-able dicts and never
raise for an expected failure (a bad image comes back as {"error": {...}} so its stable code survives pickling).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ocr.errors import C1Error, MissingDependency
from ocr.results import PageReading


class PageReader(Protocol):
    def check(self, data: bytes, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        """Fast: load, locate and gate only (no fields). Raises BadInput/InputTooLarge for unusable bytes."""
        ...

    def read(self, path: Path, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        """The full reading of a stored photo."""
        ...


class PipelineReader:
    """The real reader: ocr.pipeline.check_page / read_page."""

    def check(self, data: bytes, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        return _pipeline().check_page(data, image_name=image_name, expected_template=expected_template, engine=engine)

    def read(self, path: Path, *, image_name: str, expected_template: str | None, engine: str) -> PageReading:
        return _pipeline().read_page(path, image_name=image_name, expected_template=expected_template, engine=engine)


def _pipeline() -> Any:
    try:
        return importlib.import_module("ocr.pipeline")
    except ImportError as e:
        raise MissingDependency(f"the page reader (ocr.pipeline) cannot be imported: {e}") from None


@lru_cache(maxsize=8)
def load_reader(spec: str) -> PageReader:
    """`module:attribute` -> a reader instance (a class is instantiated once per process)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reader spec must be 'module:attribute', got {spec!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    return obj() if isinstance(obj, type) else obj


def _error(e: C1Error) -> dict[str, Any]:
    return {"error": {"code": e.code, "message": e.message, "http_status": e.http_status, "kind": type(e).__name__}}


def worker_check(spec: str, data: bytes, image_name: str, expected_template: str | None, engine: str) -> dict:
    try:
        reading = load_reader(spec).check(data, image_name=image_name, expected_template=expected_template, engine=engine)
    except C1Error as e:
        return _error(e)
    return {"reading": reading.model_dump(mode="json")}


def worker_read(spec: str, path: str, image_name: str, expected_template: str | None, engine: str) -> dict:
    """Runs in a worker process. Unexpected exceptions propagate: the job runner retries them."""
    try:
        reading = load_reader(spec).read(
            Path(path), image_name=image_name, expected_template=expected_template, engine=engine
        )
    except C1Error as e:
        return _error(e)
    return {"reading": reading.model_dump(mode="json")}
