"""One-time, idempotent preparation of a deployment: SQL schema, checkpoint tables, streams."""

from __future__ import annotations

import asyncio

import nats.errors
import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from nats.js.errors import ServiceUnavailableError

from graphmesh.bus import connect_nats, ensure_streams
from graphmesh.config import Settings
from graphmesh.errors import Unavailable
from graphmesh.store import migrate

# How long `graphmesh migrate` waits for JetStream to answer (a cluster electing its leader).
JETSTREAM_WAIT_SECONDS = 60.0


async def prepare(database_url: str, nats_url: str, *, settings: Settings | None = None) -> None:
    """Creates what a deployment needs; queue settings come from `settings` (default: the
    GRAPHMESH_* environment)."""
    settings = settings or Settings.from_env()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await migrate(conn)
        # The checkpointer's own migrations; it takes no lock, so run it once, here.
        await AsyncPostgresSaver(conn).setup()
    nc = await connect_nats(nats_url, name="graphmesh-setup")
    try:
        await _with_jetstream_retries(lambda: ensure_streams(
            nc.jetstream(), ack_wait_seconds=settings.ack_wait_seconds, replicas=settings.nats_replicas))
    finally:
        await nc.close()


async def _with_jetstream_retries(attempt, *, seconds: float = JETSTREAM_WAIT_SECONDS) -> None:
    """A NATS cluster that has just started answers JetStream requests only once it has
    elected its meta leader: time-outs and "temporarily unavailable" until then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await attempt()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError) as exc:
            if loop.time() > deadline:
                raise Unavailable(f"JetStream did not answer for {seconds:g} s ({type(exc).__name__}): is "
                                  "JetStream enabled, and does the cluster have a quorum?",
                                  code="JETSTREAM_UNAVAILABLE") from exc
            await asyncio.sleep(0.5)
