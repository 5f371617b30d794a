"""Bounded concurrency: a fixed number of requests admitted, a fixed number of inference threads.

A request is admitted for its whole life (upload, wait, scoring), so memory and threads stay
bounded whatever the traffic; the request after the last admitted one is refused at once with a
`Busy` that says when to retry, instead of piling up behind the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator


class Busy(Exception):
    """Every slot is taken; `retry_after` is a whole number of seconds worth waiting."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"server busy: every place in the queue is taken; retry in {retry_after} s")


def _yield_to_the_loop(niceness: int) -> None:
    """Run on each inference thread as it starts: lower its CPU priority below the event loop's
    (on Linux, priorities are per thread).

    Scoring keeps every core busy under load; at equal priority the event loop waits its turn
    behind it, and refusals (503), health checks and uploads slow down with the load they are
    meant to shed. The loop is one thread, so it can take at most one core's worth from scoring."""
    if niceness <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: equal priority
        pass


class Gate:
    def __init__(self, workers: int, queue: int, niceness: int = 0):
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0
        self._slots = asyncio.Semaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="realjudge-infer", initializer=_yield_to_the_loop,
                                        initargs=(niceness,))
        self._job_seconds = 0.05  # running mean of job time, for Retry-After

    @property
    def full(self) -> bool:
        return self.admitted >= self.capacity

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the `workers + queue` places, or raise `Busy`."""
        if self.full:
            raise Busy(self.retry_after())
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    def retry_after(self) -> int:
        """Seconds until the jobs ahead should have drained, at the recent pace."""
        return max(1, min(60, math.ceil(self._job_seconds * self.capacity / self.workers)))

    async def run(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """Run `fn(*args)` on an inference thread once one is free; return its result and the
        seconds spent waiting for the thread.

        The thread's slot is given back when the job really ends, not when the caller stops
        waiting: a request that timed out cannot let more jobs run than there are workers.
        """
        asked = time.monotonic()
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        def finished(_future) -> None:
            self._job_seconds = 0.8 * self._job_seconds + 0.2 * (time.monotonic() - started)
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._slots.release)

        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(finished)
        return await asyncio.wrap_future(future), started - asked

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
