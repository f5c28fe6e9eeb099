"""The webhook sender: the api's background loop that drains the outbox.

Every poll it claims as many due deliveries as it has free slots (graphmesh/store/webhooks.py
leases them), and posts each in a task of its own, so one slow receiver holds one slot for
at most the timeout, not the whole loop. An attempt: build and store the body if this is the
first one, sign it, post it, then record what happened: DELIVERED; PENDING again after a
backoff; or FAILED (a final refusal, or the last allowed attempt failed). Nothing here is
lost to a crash: an attempt whose outcome was never recorded keeps its lease until it lapses,
and then any sender posts it again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from graphmesh.errors import NotFound
from graphmesh.loops import run_periodically
from graphmesh.store.webhooks import Delivery, DeliveryStore
from graphmesh.telemetry.metrics import SECONDS_BUCKETS, meter
from graphmesh.thread_state import read_thread
from graphmesh.webhooks import payload as payloads
from graphmesh.webhooks.retry import DELIVERED, FAILED, backoff, classify
from graphmesh.webhooks.sender import HttpSender
from graphmesh.webhooks.signing import Signer

log = logging.getLogger(__name__)

# Deliveries one api process posts at once.
CONCURRENCY = 16
# A claim outlives the attempt's own deadline by this much (building the body reads the
# thread's state), so a live sender never loses its lease mid-attempt.
LEASE_MARGIN_SECONDS = 30.0

ATTEMPTS = meter.create_counter(
    "graphmesh.webhook.attempts", unit="{attempt}",
    description="Webhook POSTs made, by outcome (delivered, retry, failed)")
DELIVERIES = meter.create_counter(
    "graphmesh.webhook.deliveries", unit="{delivery}",
    description="Webhook deliveries that reached a final status, by outcome (delivered, failed)")
FAILURES = meter.create_counter(
    "graphmesh.webhook.failures", unit="{failure}",
    description="Failed webhook attempts, by reason (timeout, network, refused, status, redirect)")
ATTEMPT_DURATION = meter.create_histogram(
    "graphmesh.webhook.attempt.duration", unit="s", description="Wall time of one webhook POST",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)


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
        """Polls until cancelled; attempts in flight are cancelled with it (their leases lapse)."""
        try:
            await run_periodically("webhook sender", self.step, every_seconds, first_delay=0)
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._http.aclose()

    async def step(self) -> int:
        """Claims due deliveries for the free slots and starts their attempts; returns how many."""
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        claimed = await self._deliveries.claim_due(limit=free, lease_seconds=self._timeout + LEASE_MARGIN_SECONDS)
        for delivery in claimed:
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook {delivery.delivery_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(claimed)

    async def _attempt(self, d: Delivery) -> None:
        try:
            await self.attempt(d)
        except asyncio.CancelledError:
            raise
        except Exception:  # Postgres gone, say: the lease lapses and the attempt is made again
            log.exception("webhook delivery %s: attempt %d not recorded; it will be retried once its lease lapses",
                          d.delivery_id, d.attempts)

    async def attempt(self, d: Delivery) -> str:
        """One attempt of a claimed delivery, recorded; returns DELIVERED, RETRY or FAILED."""
        body = await self._body(d)
        if body is None:
            return FAILED
        started = time.monotonic()
        result = await self._http.post(d.url, body, self._signer.headers(d.delivery_id, body))
        ATTEMPT_DURATION.record(time.monotonic() - started)
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
        ATTEMPTS.add(1, {"outcome": outcome})
        if outcome in (DELIVERED, FAILED) and recorded:
            DELIVERIES.add(1, {"outcome": outcome})
        if outcome == FAILED:
            log.warning("webhook delivery %s of run %s to %s failed for good: %s", d.delivery_id, d.run_id, d.url,
                        reason)
        elif outcome != DELIVERED:
            log.info("webhook delivery %s attempt %d: %s; will retry", d.delivery_id, d.attempts, reason)
        return outcome

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
