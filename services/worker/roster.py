"""Announces this worker in Postgres every few seconds (capacity, load, graph versions),
for `graphmesh workers list` and the api's view of who serves what; the same figures go
to the worker's metrics."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from graphmesh.store import ControlStore, WorkerInfo
from graphmesh.telemetry.metrics import set_snapshot
from services.worker.consumer import JobConsumer

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0


async def announce_forever(control: ControlStore, consumer: JobConsumer, *, address: str, registry,
                           started_at: datetime) -> None:
    graphs = [{"graph": s.name, "graph_version": s.version} for s in registry.specs()]
    while True:
        labels = (("worker", consumer.worker_id),)
        set_snapshot("graphmesh.worker.active_runs", {labels: float(len(consumer.active))})
        set_snapshot("graphmesh.worker.capacity", {labels: float(consumer.capacity)})
        try:
            await control.heartbeat(WorkerInfo(
                worker_id=consumer.worker_id, address=address, capacity=consumer.capacity,
                active=len(consumer.active), draining=consumer.draining, graphs=graphs,
                started_at=started_at, last_seen=started_at))
        except Exception as exc:
            log.debug("worker heartbeat failed: %s", exc)
        await asyncio.sleep(HEARTBEAT_SECONDS)
