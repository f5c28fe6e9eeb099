"""Control messages between the api and the workers, on core NATS (fire-and-forget: each
has a Postgres-backed fallback, so a lost message only costs time)."""

from __future__ import annotations

import json
from typing import Awaitable, Callable

from nats.aio.client import Client as NATS

CANCEL_SUBJECT = "gm.control.cancel"
NODES_SUBJECT = "gm.control.nodes"
ROLLOUT_SUBJECT = "gm.control.rollout"


async def publish_cancel(nc: NATS, run_id: str, reason: str, action: str) -> None:
    await nc.publish(CANCEL_SUBJECT, json.dumps({"run_id": run_id, "reason": reason, "action": action}).encode())
    await nc.flush()


async def publish_nodes_changed(nc: NATS, graph: str) -> None:
    await nc.publish(NODES_SUBJECT, graph.encode())
    await nc.flush()


async def publish_rollout_changed(nc: NATS, graph: str) -> None:
    await nc.publish(ROLLOUT_SUBJECT, graph.encode())
    await nc.flush()


async def on_cancel(nc: NATS, handler: Callable[[str, str, str], None]) -> None:
    async def deliver(msg) -> None:
        request = json.loads(msg.data)
        handler(request["run_id"], request["reason"], request["action"])

    await nc.subscribe(CANCEL_SUBJECT, cb=deliver)


async def on_nodes_changed(nc: NATS, handler: Callable[[str], Awaitable[None]]) -> None:
    async def deliver(msg) -> None:
        await handler(msg.data.decode())

    await nc.subscribe(NODES_SUBJECT, cb=deliver)
