"""One-time, idempotent preparation of a deployment: SQL schema, checkpoint tables, streams."""

from __future__ import annotations

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graphmesh.bus import connect_nats, ensure_streams
from graphmesh.config import Settings
from graphmesh.store import migrate


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
        await ensure_streams(nc.jetstream(), ack_wait_seconds=settings.ack_wait_seconds,
                             replicas=settings.nats_replicas)
    finally:
        await nc.close()
