"""Service settings: where data lives, limits, roles, job runner. Environment prefix `C1OCR_` (e.g. C1OCR_DATA_DIR).

The reader's own thresholds stay in `ocr.config`; these are the service's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ServiceSettings(BaseSettings):
    # extra="ignore": C1OCR_* variables of the reader's settings share the prefix.
    model_config = SettingsConfigDict(env_prefix="C1OCR_", extra="ignore", arbitrary_types_allowed=True)

    data_dir: Path = Path("c1ocr-data")
    # SQLite file under data_dir when empty; e.g. postgresql+psycopg://user@host/db for PostgreSQL.
    database_url: str = ""
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    # Public read of provisional tallies without a token (can be changed at run time by an admin).
    public_read: bool = False
    # Fields the reader accepted below this confidence still go to review (a service-side threshold, audited).
    review_below_confidence: float = 0.0
    lease_seconds: int = 120
    # Job runner: "process" (ProcessPoolExecutor, the default) or "thread" (tests, debugging).
    job_executor: Literal["process", "thread"] = "process"
    job_workers: int = 1
    job_max_attempts: int = 3
    job_retry_wait_s: float = 0.5
    # How long the upload waits for the quick gate check before answering without it.
    check_timeout_s: float = 10.0
    # A reading that takes longer is stopped (its worker process is killed) and counts as a crashed attempt: retried,
    # then failed. A page normally takes well under 5 s; a stuck one must not hold a worker for good.
    read_timeout_s: float = 300.0
    # "module:attribute" of the page reader (see api/readers.py); tests inject a fake one.
    reader: str = "api.readers:PipelineReader"
    engine: str = "ensemble"
    # Injected clock (tests move time forward to expire leases); not from the environment.
    clock: Callable[[], datetime] = Field(default=utcnow, exclude=True)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'c1ocr.sqlite3').resolve()}"

    @property
    def photo_dir(self) -> Path:
        return self.data_dir / "photos"

    def model_post_init(self, __context: Any) -> None:
        self.data_dir = Path(self.data_dir)
