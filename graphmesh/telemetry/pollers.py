"""Gauges that need a query, refreshed every few seconds into metrics.snapshots (a scrape
then never waits on Postgres or NATS). The api polls runs and the queue, the review
service polls approvals; both only when metrics are served."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext

from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER
from graphmesh.store import RunStore
from graphmesh.telemetry.metrics import set_snapshot

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0

_RUNS_IN_FLIGHT = """
SELECT graph, graph_version, status, count(*) AS n FROM gm_runs
WHERE status IN ('QUEUED', 'RUNNING', 'PAUSED', 'WAITING_FOR_APPROVAL') GROUP BY 1, 2, 3
"""
_PENDING_APPROVALS = "SELECT graph, count(*) AS n FROM gm_approvals WHERE status = 'PENDING' GROUP BY 1"


async def poll_runs(store: RunStore, js: JetStreamContext) -> None:
    async with store.connection() as conn:
        rows = await (await conn.execute(_RUNS_IN_FLIGHT)).fetchall()
    depth, active = {}, {}
    for r in rows:
        labels = (("graph", r["graph"]), ("graph_version", r["graph_version"]))
        if r["status"] == "QUEUED":
            depth[labels] = float(r["n"])
        else:
            active[labels + (("status", r["status"].lower()),)] = float(r["n"])
    set_snapshot("graphmesh.queue.depth", depth)
    set_snapshot("graphmesh.runs.active", active)
    info = await js.consumer_info(RUNS_STREAM, WORKER_CONSUMER)
    set_snapshot("graphmesh.queue.consumer_lag", {(("state", "undelivered"),): float(info.num_pending or 0),
                                                  (("state", "unacked"),): float(info.num_ack_pending or 0)})


async def poll_approvals(store: RunStore) -> None:
    async with store.connection() as conn:
        rows = await (await conn.execute(_PENDING_APPROVALS)).fetchall()
    set_snapshot("graphmesh.approvals.pending", {(("graph", r["graph"]),): float(r["n"]) for r in rows})


async def poll_forever(poll, *args) -> None:
    while True:
        try:
            await poll(*args)
        except Exception as exc:  # an outage shows on the dependency gauge; keep the last values
            log.debug("metrics poll failed: %s", exc)
        await asyncio.sleep(POLL_SECONDS)
