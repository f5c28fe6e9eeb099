"""The webhook outbox in Postgres (gm_webhook_deliveries): claiming due deliveries,
recording what an attempt did, listing, replaying.

Rows are written by a trigger on gm_runs in the transaction that changes a run's status
(graphmesh/store/schema.py), so every path that ends a run fills the outbox and no crash
loses a delivery. Senders in any number of api replicas share the work: a claim takes due
rows with FOR UPDATE SKIP LOCKED and leases them (locked_until) for one attempt, counting
the attempt as it claims, so a sender that dies mid-post leaves a lease that lapses and
another sender retries it (the receiver may see it twice: delivery is at least once, and
the webhook-id header lets it deduplicate), up to the attempt limit: a row that used its
last attempt is never claimed again but marked FAILED. A sender that stops cleanly gives
its claims back (release) without using an attempt. The attempt number a claim returned fences its
outcome: a sender whose lease lapsed and was re-claimed cannot overwrite the newer attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from psycopg.types.json import Jsonb

from graphmesh.errors import FailedPrecondition, NotFound
from graphmesh.store.audit import record_audit
from graphmesh.store.paging import filters, keyset_page, parse_uuid

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
STATUSES = (PENDING, DELIVERED, FAILED)

# Due, unleased rows, oldest first. A row whose attempts already reached the limit (its last
# attempt was claimed but never recorded: the sender died, or it lost its lease) is never
# claimed again: it is marked FAILED in the same statement and returned with gave_up set.
CLAIM_DUE = """
WITH due AS (
    SELECT delivery_id, attempts FROM gm_webhook_deliveries
    WHERE status = 'PENDING' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
    ORDER BY next_attempt_at
    FOR UPDATE SKIP LOCKED
    LIMIT %(limit)s
), gave_up AS (
    UPDATE gm_webhook_deliveries d
    SET status = 'FAILED', locked_until = NULL, updated_at = now(),
        last_error = 'gave up after ' || d.attempts || ' attempts'
            || CASE WHEN d.last_error = '' THEN '; the last was never recorded'
                    ELSE '; the last recorded: ' || d.last_error END
    FROM due WHERE d.delivery_id = due.delivery_id AND due.attempts >= %(max_attempts)s
    RETURNING d.*
), claimed AS (
    UPDATE gm_webhook_deliveries d
    SET locked_until = now() + make_interval(secs => %(lease)s), attempts = d.attempts + 1, updated_at = now()
    FROM due WHERE d.delivery_id = due.delivery_id AND due.attempts < %(max_attempts)s
    RETURNING d.*
)
SELECT *, NULL::text AS graph, false AS gave_up FROM claimed
UNION ALL
SELECT *, NULL::text AS graph, true AS gave_up FROM gave_up
"""

# Built once, at the first attempt: every later attempt (and a replay) sends these bytes.
KEEP_PAYLOAD = """
UPDATE gm_webhook_deliveries SET payload = coalesce(payload, %s)
WHERE delivery_id = %s
RETURNING payload
"""

# Each outcome applies only to the claim that made the attempt (same attempt count, still
# PENDING): a lapsed claim's late answer is dropped.
_FENCE = "WHERE delivery_id = %(delivery_id)s AND attempts = %(attempt)s AND status = 'PENDING'"
RECORD_DELIVERED = f"""
UPDATE gm_webhook_deliveries
SET status = 'DELIVERED', delivered_at = now(), locked_until = NULL, last_error = '',
    last_status_code = %(status_code)s, updated_at = now()
{_FENCE}
"""
RECORD_RETRY = f"""
UPDATE gm_webhook_deliveries
SET next_attempt_at = now() + make_interval(secs => %(delay)s), locked_until = NULL,
    last_error = %(error)s, last_status_code = %(status_code)s, updated_at = now()
{_FENCE}
"""
RECORD_FAILED = f"""
UPDATE gm_webhook_deliveries
SET status = 'FAILED', locked_until = NULL, last_error = %(error)s, last_status_code = %(status_code)s,
    updated_at = now()
{_FENCE}
"""
# A claim given back unused (the sender stopped before the attempt's outcome): the attempt
# is uncounted and the row due again at once, so a deploy costs a delivery no attempt.
RELEASE = f"""
UPDATE gm_webhook_deliveries
SET attempts = attempts - 1, locked_until = NULL, updated_at = now()
{_FENCE}
"""

# Deliveries with their run's graph (NULL once the run was purged), for listing and roles.
# `graph` comes from the run, never from a caller's text.
WITH_GRAPH = ("(SELECT d.*, r.graph FROM gm_webhook_deliveries d "
              "LEFT JOIN gm_runs r ON r.run_id = d.run_id) AS deliveries")
SELECT_DELIVERY = f"SELECT * FROM {WITH_GRAPH} WHERE delivery_id = %s"
LOCK_DELIVERY = "SELECT status, attempts, last_error FROM gm_webhook_deliveries WHERE delivery_id = %s FOR UPDATE"
REPLAY = """
UPDATE gm_webhook_deliveries
SET status = 'PENDING', attempts = 0, next_attempt_at = now(), locked_until = NULL, last_error = '',
    last_status_code = NULL, delivered_at = NULL, updated_at = now()
WHERE delivery_id = %s
"""


def redacted_url(url: str) -> str:
    """scheme://host[:port] of `url`: what logs and audit records show of a webhook URL,
    whose path or query often carries the receiver's token (Slack-style)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unreadable url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    run_id: str
    event_seq: int
    run_status: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime
    locked_until: datetime | None
    payload: Any
    last_error: str
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    graph: str  # "" once the run is gone

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Delivery":
        return cls(
            delivery_id=str(row["delivery_id"]), run_id=str(row["run_id"]), event_seq=row["event_seq"],
            run_status=row["run_status"], url=row["url"], status=row["status"], attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"], locked_until=row["locked_until"], payload=row["payload"],
            last_error=row["last_error"], last_status_code=row["last_status_code"], created_at=row["created_at"],
            updated_at=row["updated_at"], delivered_at=row["delivered_at"], graph=row.get("graph") or "",
        )


class DeliveryStore:
    """Thin async I/O over gm_webhook_deliveries; `store` is a RunStore (its connection()
    maps Postgres outages to UNAVAILABLE)."""

    def __init__(self, store) -> None:
        self._store = store

    async def claim_due(self, *, limit: int, lease_seconds: float,
                        max_attempts: int) -> tuple[list[Delivery], list[Delivery]]:
        """(claimed, gave_up). Claimed: up to `limit` due deliveries, leased to the caller
        for `lease_seconds`, each with its attempt counted (Delivery.attempts is this
        attempt's number). Gave up: due deliveries that had already used `max_attempts`,
        now FAILED instead of claimed (they count against `limit`)."""
        async with self._store.connection() as conn:
            rows = await (await conn.execute(CLAIM_DUE, {"lease": lease_seconds, "limit": limit,
                                                         "max_attempts": max_attempts})).fetchall()
        return ([Delivery.from_row(r) for r in rows if not r["gave_up"]],
                [Delivery.from_row(r) for r in rows if r["gave_up"]])

    async def keep_payload(self, delivery_id: str, payload: dict[str, Any]) -> Any:
        """Stores `payload` unless the delivery already has one; returns the stored one."""
        async with self._store.connection() as conn:
            row = await (await conn.execute(KEEP_PAYLOAD, (Jsonb(payload), delivery_id))).fetchone()
        return row["payload"] if row else payload

    async def _record(self, sql: str, params: dict[str, Any]) -> bool:
        async with self._store.connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount == 1

    async def delivered(self, d: Delivery, status_code: int) -> bool:
        return await self._record(RECORD_DELIVERED, {"delivery_id": d.delivery_id, "attempt": d.attempts,
                                                     "status_code": status_code})

    async def retry(self, d: Delivery, *, delay: float, error: str, status_code: int | None) -> bool:
        return await self._record(RECORD_RETRY, {"delivery_id": d.delivery_id, "attempt": d.attempts,
                                                 "delay": delay, "error": error, "status_code": status_code})

    async def failed(self, d: Delivery, *, error: str, status_code: int | None) -> bool:
        return await self._record(RECORD_FAILED, {"delivery_id": d.delivery_id, "attempt": d.attempts,
                                                  "error": error, "status_code": status_code})

    async def release(self, d: Delivery) -> bool:
        """Gives back the claim of an attempt that was stopped before its outcome."""
        return await self._record(RELEASE, {"delivery_id": d.delivery_id, "attempt": d.attempts})

    async def get(self, delivery_id: str) -> Delivery:
        delivery_id = parse_uuid(delivery_id, "webhook delivery")
        async with self._store.connection() as conn:
            row = await (await conn.execute(SELECT_DELIVERY, (delivery_id,))).fetchone()
        if row is None:
            raise NotFound(f"webhook delivery '{delivery_id}' not found", code="WEBHOOK_DELIVERY_NOT_FOUND")
        return Delivery.from_row(row)

    async def list(self, *, status: str = "", run_id: str = "", graphs: list[str] | None = None,
                   page_size: int, page_token: str = "") -> tuple[list[Delivery], str]:
        """Newest first. `graphs`: only deliveries of runs of these graphs (None: all,
        including those whose run was purged)."""
        where, args = filters(("status = %s", status), ("run_id = %s", run_id and parse_uuid(run_id, "run")),
                              ("graph = ANY(%s)", graphs))
        return await keyset_page(self._store.connection, WITH_GRAPH, "delivery_id", where, args,
                                 page_size=page_size, page_token=page_token, from_row=Delivery.from_row)

    async def replay(self, delivery_id: str, *, actor: str, reason: str) -> Delivery:
        """Back to PENDING, attempts reset, due now; the same payload and delivery id go out
        again. One audit record (webhook_replayed) in the same transaction. Refused for a
        delivery still PENDING: it is already going to be sent."""
        delivery_id = parse_uuid(delivery_id, "webhook delivery")
        async with self._store.connection() as conn:
            async with conn.transaction():
                row = await (await conn.execute(LOCK_DELIVERY, (delivery_id,))).fetchone()
                if row is None:
                    raise NotFound(f"webhook delivery '{delivery_id}' not found", code="WEBHOOK_DELIVERY_NOT_FOUND")
                if row["status"] == PENDING:
                    raise FailedPrecondition(f"webhook delivery {delivery_id} is still PENDING (attempt "
                                             f"{row['attempts']}); only a DELIVERED or FAILED one can be replayed",
                                             code="WEBHOOK_DELIVERY_PENDING")
                before = await (await conn.execute(SELECT_DELIVERY, (delivery_id,))).fetchone()
                await conn.execute(REPLAY, (delivery_id,))
                await record_audit(conn, actor, "webhook_replayed", run_id=str(before["run_id"]), details={
                    "delivery_id": delivery_id, "previous_status": row["status"], "attempts": row["attempts"],
                    "last_error": row["last_error"], "url": redacted_url(before["url"]), "reason": reason})
        return await self.get(delivery_id)
