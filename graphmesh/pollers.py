"""Gauges that need a query, refreshed every few seconds into metrics.snapshots (a scrape
then never waits on Postgres or NATS). The api polls runs and the queue, the review
service polls approvals; both only when metrics are served.

The run gauges read 0, rather than vanish, for every graph version known here: those
live workers announce (gm_workers), those the caller names (`known`), and those this
process has already reported. An idle mesh then shows `graphmesh_queue_depth 0`, which a
dashboard or an autoscaler can tell from "no data"."""

from __future__ import annotations

import logging
from typing import Iterable

from nats.js import JetStreamContext

from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER
from graphmesh.loops import run_periodically
from graphmesh.store import RunStore
from graphmesh.store.gauges import pending_approvals, runs_in_flight, worker_versions
from graphmesh.store.statuses import IN_PROGRESS, RunStatus
from graphmesh.telemetry.metrics import set_snapshot

Labels = tuple[tuple[str, str], ...]

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0

# The runs.active gauge's status labels: in progress but no longer queued.
ACTIVE_STATUSES = tuple(s.value.lower() for s in sorted(IN_PROGRESS - {RunStatus.QUEUED}))
# (graph, version) pairs reported before by this process: they keep reading 0 when idle.
_seen_versions: set[tuple[str, str]] = set()

_seen_approval_graphs: set[str] = set()


async def poll_runs(store: RunStore, js: JetStreamContext, known: Iterable[tuple[str, str]] = ()) -> None:
    async with store.connection() as conn:
        rows = await runs_in_flight(conn)
        served = await worker_versions(conn)
    versions = _seen_versions | set(known) | {(r["graph"], r["graph_version"]) for r in served}
    versions |= {(r["graph"], r["graph_version"]) for r in rows}
    _seen_versions.update(versions)
    depth: dict[Labels, float] = {}
    active: dict[Labels, float] = {}
    for graph, version in versions:
        labels = (("graph", graph), ("graph_version", version))
        depth[labels] = 0.0
        for status in ACTIVE_STATUSES:
            active[labels + (("status", status),)] = 0.0
    for r in rows:
        labels = (("graph", r["graph"]), ("graph_version", r["graph_version"]))
        if r["status"] == RunStatus.QUEUED:
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
        rows = await pending_approvals(conn)
    pending = {r["graph"]: float(r["n"]) for r in rows}
    _seen_approval_graphs.update(pending)
    set_snapshot("graphmesh.approvals.pending",
                 {(("graph", graph),): pending.get(graph, 0.0) for graph in _seen_approval_graphs})


async def poll_forever(poll, *args) -> None:
    """Polls now and every POLL_SECONDS; a failed poll keeps the last values (an outage
    shows on the dependency gauge) and is logged and counted by run_periodically."""
    await run_periodically(f"metrics poll ({poll.__name__})", lambda: poll(*args), POLL_SECONDS,
                           first_delay=0, logger=log)
