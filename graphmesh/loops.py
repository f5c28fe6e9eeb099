"""Periodic background loops (reconciler, retention, refreshes, expiry, relays, pollers),
and `retry_for`, the one bounded retry of a single call (a resent event, a JetStream cluster
that is still electing its leader).

`run_periodically` runs one step every `interval` seconds until cancelled. A step that
raises never stops the loop, but it is not swallowed either: the first failure, and
each failure that differs from the previous one (another exception type or another
place it was raised), is logged with its traceback; repeats of the same failure get a
one-line warning when the count in a row reaches 2, 4, 8, ... Failures in a row back off (the interval doubled each time, up to
`max_backoff`, never below the interval itself), every failure is counted in
`graphmesh_loop_failures_total{loop=...}`, and the first success after failures is
logged as a recovery. So an outage does not flood the log, and a programming error
shows its traceback instead of repeating `str(exc)` forever.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Awaitable, Callable, TypeVar

from graphmesh.telemetry.metrics import LOOP_FAILURES

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
_sleep = asyncio.sleep  # tests replace it

T = TypeVar("T")


async def retry_for(attempt: Callable[[], Awaitable[T]], *, seconds: float,
                    retry_on: Callable[[Exception], bool], interval: float = 0.25) -> T:
    """Awaits `attempt()` until it returns, again every `interval` while it raises an
    exception `retry_on` accepts, for at most `seconds`; then the last exception is raised."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not retry_on(exc) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(interval)


def failure_signature(exc: BaseException) -> tuple[str, str, int]:
    """What makes two failures "the same": the exception type and where it was raised
    (the innermost frame), not its message, which often carries changing ids or times."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = frames[-1] if frames else None
    return (f"{type(exc).__module__}.{type(exc).__qualname__}",
            where.filename if where else "", where.lineno or 0 if where else 0)


class LoopState:
    """Failure bookkeeping of one loop; `delay()` is how long to wait before the next step."""

    def __init__(self, name: str, interval: float, *, max_backoff: float = MAX_BACKOFF_SECONDS,
                 logger: logging.Logger | None = None) -> None:
        self.name = name
        self.interval = interval
        self.max_backoff = max(interval, max_backoff)
        self.log = logger or log
        self.failures = 0  # in a row
        self.total_failures = 0
        self._signature: tuple[str, str, int] | None = None

    def succeeded(self) -> None:
        if self.failures:
            self.log.info("%s recovered after %d failed pass%s", self.name, self.failures,
                          "" if self.failures == 1 else "es")
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.total_failures += 1
        LOOP_FAILURES.add(1, {"loop": self.name})
        signature = failure_signature(exc)
        if signature != self._signature:
            self._signature = signature
            self.log.error("%s failed (retrying in %gs): %s: %s", self.name, self.delay(), type(exc).__name__, exc,
                           exc_info=exc)
        elif self.failures & (self.failures - 1) == 0:  # 2, 4, 8, ... in a row: a reminder, not a flood
            self.log.warning("%s failed again (%d in a row, retrying in %gs): %s: %s", self.name, self.failures,
                             self.delay(), type(exc).__name__, exc)

    def delay(self) -> float:
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** (self.failures - 1), self.max_backoff)


async def run_periodically(name: str, step: Callable[[], Awaitable[object]], interval: float, *,
                           first_delay: float | None = None, max_backoff: float = MAX_BACKOFF_SECONDS,
                           logger: logging.Logger | None = None) -> None:
    """Awaits `step()` every `interval` seconds (the first time after `first_delay`, by
    default one interval) until cancelled; see the module docstring for failures."""
    state = LoopState(name, interval, max_backoff=max_backoff, logger=logger)
    await _sleep(interval if first_delay is None else first_delay)
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            state.failed(exc)
        else:
            state.succeeded()
        await _sleep(state.delay())
