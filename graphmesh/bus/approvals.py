"""Approval events on the GM_APPROVALS stream, for review tools.

Messages are written to the Postgres outbox in the transaction that changes the approval,
published right after commit, and re-published by a relay if that publisher died first.
The message id makes a re-publish a duplicate JetStream drops. An event's sequence is its
JetStream stream sequence, so a watcher resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from graphmesh.bus.streams import APPROVAL_SUBJECT_PREFIX, APPROVALS_STREAM, _token
from graphmesh.messages import approval_to_proto
from graphmesh.store import ApprovalRecord, ApprovalStore
from graphmesh.v1 import review_service_pb2 as pb

log = logging.getLogger(__name__)


def approval_subject(graph: str = "") -> str:
    return f"{APPROVAL_SUBJECT_PREFIX}.{_token(graph)}" if graph else f"{APPROVAL_SUBJECT_PREFIX}.>"


def announcement(approval: ApprovalRecord, kind: str) -> tuple[str, str, bytes]:
    """The outbox message for an approval that was requested or decided."""
    event = pb.ApprovalEvent(approval=approval_to_proto(approval), **{kind: True})
    return approval_subject(approval.graph), f"{approval.approval_id}:{kind}", event.SerializeToString()


async def publish_outbox(js: JetStreamContext, store: ApprovalStore, ids: tuple[int, ...]) -> None:
    """Publishes outbox rows written by a committed transaction; the relay covers failures."""
    if not ids:
        return
    try:
        rows = await store.outbox_rows(ids)
        await _publish_rows(js, store, rows)
    except Exception as exc:
        log.warning("approval events left to the outbox relay: %s", exc)


async def _publish_rows(js: JetStreamContext, store: ApprovalStore, rows: list[dict]) -> None:
    for row in rows:
        await js.publish(row["subject"], bytes(row["payload"]), headers={"Nats-Msg-Id": row["msg_id"]})
    await store.outbox_done([row["id"] for row in rows])


async def relay_outbox_forever(js: JetStreamContext, store: ApprovalStore, *, every_seconds: float = 2.0) -> None:
    from graphmesh.loops import run_periodically

    async def relay() -> None:
        rows = await store.outbox_batch(older_than_seconds=every_seconds)
        if rows:
            log.info("relaying %d approval events left in the outbox", len(rows))
            await _publish_rows(js, store, rows)

    # A failed pass (Postgres or NATS away, or a bug) is logged, counted and retried with backoff.
    await run_periodically("approval outbox relay", relay, every_seconds, logger=log)


async def last_stream_sequence(js: JetStreamContext) -> int:
    return (await js.stream_info(APPROVALS_STREAM)).state.last_seq


async def watch(js: JetStreamContext, *, graph: str = "", after_sequence: int = 0,
                idle_timeout: float = 5.0) -> AsyncIterator[pb.ApprovalEvent | None]:
    """Approval events after the given stream sequence, in order; None after each quiet
    `idle_timeout`, so the caller can notice a client that went away."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    if after_sequence:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_sequence + 1)
    try:
        sub = await js.subscribe(approval_subject(graph), ordered_consumer=True, config=config)
    except NotFoundError:
        return
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout)
            except asyncio.TimeoutError:
                yield None
                continue
            event = pb.ApprovalEvent()
            event.ParseFromString(msg.data)
            event.sequence = msg.metadata.sequence.stream
            yield event
    finally:
        await sub.unsubscribe()
