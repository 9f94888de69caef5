"""Reading jobs: the quick gate check during upload and the full reading after it.

`JobRunner` is the seam where Celery (or any queue) can replace the local runner: it only needs `check`, `enqueue`,
`start`, `stop`. `LocalJobRunner` runs the reader in a ProcessPoolExecutor so the event loop never blocks. A job that
crashes (an exception, a worker process that dies and breaks the pool, or a reading over `read_timeout_s`, whose
worker is stopped) is retried a bounded number of times with tenacity, then the submission is marked `failed` with
the reason. Job state lives in the database (status, attempts), so jobs left `received`/`reading` by a stopped
server are picked up again at start.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from api.readers import worker_check, worker_read
from api.settings import ServiceSettings

log = logging.getLogger("c1ocr.jobs")


@dataclass(frozen=True)
class ReadTask:
    submission_id: str
    photo_path: str
    image_name: str
    expected_template: str


class JobStore(Protocol):
    """What the runner needs from the database (api.capture implements it)."""

    def start_attempt(self, submission_id: str) -> ReadTask | None: ...  # None: nothing to do (already finished)

    def finish(self, submission_id: str, result: dict[str, Any]) -> None: ...

    def fail(self, submission_id: str, reason: str) -> None: ...

    def pending(self) -> list[str]: ...


class JobRunner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self, data: bytes, image_name: str, expected_template: str) -> dict[str, Any] | None: ...

    def enqueue(self, submission_id: str) -> None: ...

    async def wait_idle(self) -> None: ...


class JobCrashed(Exception):
    """An attempt died (worker exception or a broken pool); worth retrying."""


def _stop_workers(pool: Executor) -> None:
    """Shut a replaced pool down and stop the work still running in it: its processes are terminated (a thread pool's
    threads cannot be stopped; they finish on their own and their results are dropped)."""
    terminate = getattr(pool, "terminate_workers", None)  # ProcessPoolExecutor, Python 3.14 and later
    if terminate is not None:
        terminate()
        return
    # Until then, its process table (read before shutdown, which drops it).
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()


def _worker_init() -> None:
    """A worker leaves Ctrl-C to the server: the terminal sends it to the whole process group, and an idle worker
    interrupted in its queue read only prints a traceback. The server's stop ends the workers (`_stop_workers`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalJobRunner:
    def __init__(self, settings: ServiceSettings, store: JobStore, *, to_thread: Callable = asyncio.to_thread):
        self.settings = settings
        self.store = store
        self._to_thread = to_thread
        self._read_pool: Executor | None = None
        self._check_pool: Executor | None = None
        self._tasks: set[asyncio.Task] = set()

    def _new_pool(self, workers: int) -> Executor:
        if self.settings.job_executor == "thread":
            return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="c1ocr-job")
        # spawn, not fork: the server process has threads, and fork copies their locks.
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )

    async def start(self) -> None:
        self._read_pool = self._new_pool(self.settings.job_workers)
        # A separate small pool so a retake answer never waits behind full readings.
        self._check_pool = self._new_pool(1)
        for submission_id in await self._to_thread(self.store.pending):
            self.enqueue(submission_id)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # A reading still running is not waited for (a stuck one would hold the stop for good): its task is cancelled,
        # so its submission is still pending and `start` reads it again; its worker process is stopped. Worker
        # threads cannot be stopped: they are waited for.
        for pool in (self._read_pool, self._check_pool):
            if isinstance(pool, ProcessPoolExecutor):
                _stop_workers(pool)
            elif pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    async def check(self, data: bytes, image_name: str, expected_template: str) -> dict[str, Any] | None:
        """The gate's answer, or None when it takes longer than check_timeout_s (the full read will still run)."""
        loop = asyncio.get_running_loop()
        s = self.settings
        pool = self._check_pool
        fut = loop.run_in_executor(pool, worker_check, s.reader, data, image_name, expected_template, s.engine)
        try:
            return await asyncio.wait_for(fut, timeout=s.check_timeout_s)
        except asyncio.TimeoutError:
            log.warning("quick check of %s timed out", image_name)
            # Its worker is still busy with it: stop it, or every later check would wait behind it.
            if self._check_pool is pool:
                self._check_pool = self._new_pool(1)
                _stop_workers(pool)
            return None
        except BrokenProcessPool:
            if self._check_pool is pool:
                self._check_pool = self._new_pool(1)
            return None

    def enqueue(self, submission_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(submission_id), name=f"read:{submission_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _attempt(self, task: ReadTask) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        s = self.settings
        pool = self._read_pool
        fut = loop.run_in_executor(
            pool, worker_read, s.reader, task.photo_path, task.image_name, task.expected_template, s.engine
        )
        try:
            return await asyncio.wait_for(fut, timeout=s.read_timeout_s)
        except asyncio.TimeoutError as e:
            # A worker cannot be stopped alone: the pool is replaced and its processes stopped. Readings that were
            # running beside this one see a broken pool and are retried like any crash.
            if self._read_pool is pool:
                self._read_pool = self._new_pool(s.job_workers)
                _stop_workers(pool)
            raise JobCrashed(f"reading took longer than {s.read_timeout_s:g} s") from e
        except BrokenProcessPool as e:
            # A worker died (crash, OOM kill): the pool is unusable; replace it once for everyone.
            if self._read_pool is pool:
                self._read_pool = self._new_pool(s.job_workers)
            raise JobCrashed(f"worker process died: {e}") from e
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any reader crash is retried, then reported
            raise JobCrashed(f"{type(e).__name__}: {e}") from e

    async def _run(self, submission_id: str) -> None:
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.job_max_attempts),
            wait=wait_exponential(multiplier=s.job_retry_wait_s, max=30),
            retry=retry_if_exception_type(JobCrashed),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    task = await self._to_thread(self.store.start_attempt, submission_id)
                    if task is None:
                        return
                    result = await self._attempt(task)
            await self._to_thread(self.store.finish, submission_id, result)
        except JobCrashed as e:
            log.error("reading %s failed after %d attempts: %s", submission_id, s.job_max_attempts, e)
            await self._to_thread(self.store.fail, submission_id, str(e)[:2000])
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - never let one job take the runner down
            log.exception("reading %s: storing the result failed", submission_id)
            await self._to_thread(self.store.fail, submission_id, "internal error while storing the reading")
