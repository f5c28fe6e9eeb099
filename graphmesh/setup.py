"""One-time, idempotent preparation of a deployment: SQL schema, checkpoint tables, streams."""

from __future__ import annotations

import nats.errors
import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from nats.js.errors import ServiceUnavailableError

from graphmesh.bus import connect_nats, ensure_streams
from graphmesh.config import Settings
from graphmesh.errors import Unavailable
from graphmesh.loops import retry_for
from graphmesh.memory import prepare_store
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
        await prepare_store(conn)  # long-term memory's tables (graphmesh/memory.py): once, like the checkpointer's
    nc = await connect_nats(nats_url, name="graphmesh-setup")
    try:
        await retry_for(lambda: ensure_streams(nc.jetstream(), ack_wait_seconds=settings.ack_wait_seconds,
                                               replicas=settings.nats_replicas),
                        seconds=JETSTREAM_WAIT_SECONDS, retry_on=_jetstream_not_ready, interval=0.5)
    except Exception as exc:
        if not _jetstream_not_ready(exc):
            raise
        raise Unavailable(f"JetStream did not answer for {JETSTREAM_WAIT_SECONDS:g} s ({type(exc).__name__}): is "
                          "JetStream enabled, and does the cluster have a quorum?",
                          code="JETSTREAM_UNAVAILABLE") from exc
    finally:
        await nc.close()


def _jetstream_not_ready(exc: Exception) -> bool:
    """A NATS cluster that has just started answers JetStream requests only once it has
    elected its meta leader: time-outs and "temporarily unavailable" until then."""
    return isinstance(exc, (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError))
