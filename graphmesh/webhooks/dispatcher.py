"""The webhook sender: the api's background loop that drains the outbox.

Every poll it claims as many due deliveries as it has free slots (graphmesh/store/webhooks.py
leases them), and posts each in a task of its own, so one slow receiver holds one slot for
at most the timeout, not the whole loop; while a claim fills every free slot (a backlog) it
claims again as soon as a slot frees, without waiting for the next poll. An attempt: build
and store the body if this is the first one, sign it, post it, then record what happened:
DELIVERED; PENDING again after a backoff; or FAILED (a final refusal, or the last allowed
attempt failed). An attempt that raises is a failed attempt too (its error recorded), except
an outage (Postgres unreachable), which cannot be recorded: its lease lapses and any sender
posts it again, and a row whose attempts reached the limit is never claimed again but marked
FAILED. Nothing is lost to a crash. On shutdown the attempts in flight are cancelled and
their claims given back uncounted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import PoolTimeout

from graphmesh.errors import NotFound, Unavailable
from graphmesh.loops import run_periodically
from graphmesh.store.webhooks import Delivery, DeliveryStore, redacted_url
from graphmesh.telemetry.metrics import meter, seconds_histogram
from graphmesh.thread_state import read_thread
from graphmesh.webhooks import payload as payloads
from graphmesh.webhooks.retry import DELIVERED, FAILED, RETRY, Result, backoff, classify
from graphmesh.webhooks.sender import HttpSender
from graphmesh.webhooks.signing import Signer

log = logging.getLogger(__name__)

# Deliveries one api process posts at once.
CONCURRENCY = 16
# A claim outlives the attempt's own deadline by this much (building the body reads the
# thread's state), so a live sender never loses its lease mid-attempt.
LEASE_MARGIN_SECONDS = 30.0
# How long a stopping sender waits to give back one claim (the host waits 5 s for all).
RELEASE_SECONDS = 3.0
# How much of an attempt's exception text is kept as its last error.
ERROR_CHARS = 500

ATTEMPTS = meter.create_counter(
    "graphmesh.webhook.attempts", unit="{attempt}",
    description="Webhook POSTs made, by outcome (delivered, retry, failed)")
DELIVERIES = meter.create_counter(
    "graphmesh.webhook.deliveries", unit="{delivery}",
    description="Webhook deliveries that reached a final status, by outcome (delivered, failed)")
FAILURES = meter.create_counter(
    "graphmesh.webhook.failures", unit="{failure}",
    description="Failed webhook attempts, by reason (timeout, network, refused, status, redirect, error)")
ATTEMPT_DURATION = seconds_histogram("graphmesh.webhook.attempt.duration", "Wall time of one webhook POST")


def is_outage(exc: BaseException) -> bool:
    """Postgres unreachable (or a transient conflict): the attempt cannot be recorded, so
    its lease lapses and it is made again. Anything else is the attempt's own failure."""
    return isinstance(exc, (Unavailable, psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout,
                            ConnectionError))


def _scrub(text: str, url: str) -> str:
    """`text` (for the log) without `url`'s path and query, where receivers' tokens live."""
    text = text.replace(url, redacted_url(url))
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return text
    rest = url[url.find(netloc) + len(netloc):] if netloc and netloc in url else ""
    return text.replace(rest, "/...") if len(rest) > 1 else text


def _reason(result) -> str:
    if result.kind:
        return result.kind
    return "redirect" if result.status_code and 300 <= result.status_code < 400 else "status"


class WebhookDispatcher:
    def __init__(self, *, store, registry, pool, policy, secret: str, timeout_seconds: float,
                 max_attempts: int, backoff_seconds: float, backoff_max_seconds: float,
                 concurrency: int = CONCURRENCY) -> None:
        self._store = store  # RunStore
        self._deliveries = DeliveryStore(store)
        self._registry = registry
        self._pool = pool
        self._signer = Signer(secret)
        self._http = HttpSender(policy, timeout_seconds=timeout_seconds)
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._backoff = (backoff_seconds, backoff_max_seconds)
        self._concurrency = concurrency
        self._in_flight: set[asyncio.Task] = set()

    async def run(self, every_seconds: float) -> None:
        """Polls until cancelled; attempts in flight are cancelled with it (their claims given back)."""
        try:
            await run_periodically("webhook sender", self.step, every_seconds, first_delay=0)
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._http.aclose()

    async def step(self) -> int:
        """Claims due deliveries for the free slots and starts their attempts; while a claim
        filled every free slot, waits for a slot to free and claims again. Returns how many
        it claimed."""
        total = 0
        while True:
            free = self._concurrency - len(self._in_flight)
            if free <= 0:
                if not self._in_flight:  # concurrency 0
                    return total
                await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
                await asyncio.sleep(0)  # the finished tasks' done callbacks leave _in_flight
                continue
            claimed, gave_up = await self._deliveries.claim_due(
                limit=free, lease_seconds=self._timeout + LEASE_MARGIN_SECONDS, max_attempts=self._max_attempts)
            for d in gave_up:
                DELIVERIES.add(1, {"outcome": FAILED})
                log.warning("webhook delivery %s of run %s to %s failed for good: gave up after %d attempts "
                            "(the last was never recorded)", d.delivery_id, d.run_id, redacted_url(d.url), d.attempts)
            for delivery in claimed:
                task = asyncio.create_task(self._attempt(delivery), name=f"webhook {delivery.delivery_id}")
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            total += len(claimed)
            if len(claimed) + len(gave_up) < free:  # the due rows are drained: until the next poll
                return total

    async def _attempt(self, d: Delivery) -> None:
        """attempt(), with what it raises handled: an outage lets the lease lapse; any other
        exception is a failed attempt, recorded; cancellation gives the claim back."""
        try:
            await self.attempt(d)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):
                log.warning("webhook delivery %s: attempt %d not recorded (%s: %s); it will be retried once its "
                            "lease lapses", d.delivery_id, d.attempts, type(exc).__name__, exc)
                return
            log.error("webhook delivery %s of run %s to %s: attempt %d raised; recorded as a failed attempt\n%s",
                      d.delivery_id, d.run_id, redacted_url(d.url), d.attempts,
                      _scrub("".join(traceback.format_exception(exc)).rstrip(), d.url))
            try:
                await self._record_error(d, exc)
            except Exception as again:  # Postgres gone meanwhile: the lease lapses
                log.warning("webhook delivery %s: attempt %d's error not recorded (%s: %s); it will be retried "
                            "once its lease lapses", d.delivery_id, d.attempts, type(again).__name__, again)

    async def _record_error(self, d: Delivery, exc: Exception) -> str:
        """Records an attempt that raised as a failed one: retried after a backoff, or FAILED
        if it was the last allowed."""
        error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        FAILURES.add(1, {"reason": "error"})
        if d.attempts >= self._max_attempts:
            outcome, reason = FAILED, f"gave up after {d.attempts} attempts; the last: {error}"
            recorded = await self._deliveries.failed(d, error=reason, status_code=None)
        else:
            outcome, reason = RETRY, error
            delay = backoff(d.attempts, base=self._backoff[0], cap=self._backoff[1])
            recorded = await self._deliveries.retry(d, delay=delay, error=reason, status_code=None)
        self._count(d, outcome, reason, recorded)
        return outcome

    async def attempt(self, d: Delivery) -> str:
        """One attempt of a claimed delivery, recorded; returns DELIVERED, RETRY or FAILED.
        Cancelled before its outcome is recorded, it gives the claim back (attempt uncounted)."""
        try:
            body = await self._body(d)
            if body is None:
                return FAILED
            started = time.monotonic()
            result = await self._http.post(d.url, body, self._signer.headers(d.delivery_id, body))
            ATTEMPT_DURATION.record(time.monotonic() - started)
        except asyncio.CancelledError:
            await self._release(d)
            raise
        return await self._record(d, result)

    async def _release(self, d: Delivery) -> None:
        try:
            await asyncio.wait_for(self._deliveries.release(d), RELEASE_SECONDS)
        except Exception as exc:  # Postgres gone too: the lease lapses instead (the attempt stays counted)
            log.warning("webhook delivery %s: claim not given back (%s: %s)", d.delivery_id, type(exc).__name__, exc)

    async def _record(self, d: Delivery, result: Result) -> str:
        outcome, reason = classify(result)
        if outcome == DELIVERED:
            recorded = await self._deliveries.delivered(d, result.status_code)
        else:
            FAILURES.add(1, {"reason": _reason(result)})
            if outcome != FAILED and d.attempts >= self._max_attempts:
                outcome, reason = FAILED, f"gave up after {d.attempts} attempts; the last: {reason}"
            if outcome == FAILED:
                recorded = await self._deliveries.failed(d, error=reason, status_code=result.status_code)
            else:
                delay = backoff(d.attempts, base=self._backoff[0], cap=self._backoff[1],
                                retry_after=result.retry_after)
                recorded = await self._deliveries.retry(d, delay=delay, error=reason, status_code=result.status_code)
        self._count(d, outcome, reason, recorded)
        return outcome

    def _count(self, d: Delivery, outcome: str, reason: str, recorded: bool) -> None:
        ATTEMPTS.add(1, {"outcome": outcome})
        if outcome in (DELIVERED, FAILED) and recorded:
            DELIVERIES.add(1, {"outcome": outcome})
        if outcome == FAILED:
            log.warning("webhook delivery %s of run %s to %s failed for good: %s", d.delivery_id, d.run_id,
                        redacted_url(d.url), _scrub(reason, d.url))
        elif outcome != DELIVERED:
            log.info("webhook delivery %s attempt %d: %s; will retry", d.delivery_id, d.attempts,
                     _scrub(reason, d.url))

    async def _body(self, d: Delivery) -> bytes | None:
        """The delivery's stored body, built and stored first if this is its first attempt;
        None (and the delivery FAILED) when its run no longer exists."""
        if d.payload is not None:
            return payloads.body(d.payload)
        try:
            run = await self._store.get_run(d.run_id)
        except NotFound:
            await self._deliveries.failed(d, error="the run no longer exists (its thread was purged)",
                                          status_code=None)
            DELIVERIES.add(1, {"outcome": FAILED})
            return None
        state = None
        if d.run_status in payloads.WITH_OUTPUT:
            try:
                state = await read_thread(self._registry, self._pool, run.graph, run.thread_id)
            except Exception as exc:  # a graph no longer served here: the webhook still goes out
                state = exc
        stored = await self._deliveries.keep_payload(d.delivery_id, payloads.build(d, run, state))
        return payloads.body(stored)
