"""Announces this worker in Postgres every few seconds (capacity, load, graph versions),
for `graphmesh workers list` and the api's view of who serves what; the same figures go
to the worker's metrics."""

from __future__ import annotations

import logging
from datetime import datetime

from graphmesh.loops import run_periodically
from graphmesh.store import ControlStore, WorkerInfo
from graphmesh.telemetry.metrics import set_snapshot
from graphmesh.worker.consumer import JobConsumer

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0


async def announce_forever(control: ControlStore, consumer: JobConsumer, *, address: str, registry,
                           started_at: datetime) -> None:
    graphs = [{"graph": s.name, "graph_version": s.version} for s in registry.specs()]

    async def announce() -> None:
        labels = (("worker", consumer.worker_id),)
        set_snapshot("graphmesh.worker.active_runs", {labels: float(len(consumer.active))})
        set_snapshot("graphmesh.worker.capacity", {labels: float(consumer.capacity)})
        await control.heartbeat(WorkerInfo(
            worker_id=consumer.worker_id, address=address, capacity=consumer.capacity,
            active=len(consumer.active), draining=consumer.draining, graphs=graphs,
            started_at=started_at, last_seen=started_at))

    # A failed heartbeat is logged, counted and retried; backoff stays under the roster's
    # window (adoption.py: 10 s), so a brief outage does not make this worker look gone.
    await run_periodically("worker heartbeat", announce, HEARTBEAT_SECONDS, first_delay=0,
                           max_backoff=HEARTBEAT_SECONDS, logger=log)
