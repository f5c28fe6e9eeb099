"""Wires a worker process: settings, Postgres pool, NATS, registry, consumer, gRPC."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from graphmesh.bus import connect_nats
from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.execution import RunExecutor
from graphmesh.logs import setup_logging
from graphmesh.rpc.server import GrpcServer
from graphmesh.store import RunStore
from graphmesh.v1 import worker_service_pb2, worker_service_pb2_grpc
from graphs.registry import Registry
from services.worker.consumer import JobConsumer
from services.worker.servicer import WorkerServicer

log = logging.getLogger(__name__)

DRAIN_GRACE_SECONDS = 30.0


async def main() -> None:
    settings = Settings.from_env()
    setup_logging(settings.worker_id, settings.log_level)
    registry = Registry.default()
    pool = make_pool(settings.database_url, max_size=settings.db_pool_size,
                     timeout=settings.db_timeout_seconds)
    await pool.open(wait=True, timeout=30)
    nc = await connect_nats(settings.nats_url, name=settings.worker_id)
    js = nc.jetstream()
    store = RunStore(pool)
    executor = RunExecutor(store=store, js=js, pool=pool, registry=registry,
                           lease_seconds=settings.lease_seconds, ack_wait_seconds=settings.ack_wait_seconds)
    consumer = JobConsumer(js=js, store=store, executor=executor, worker_id=settings.worker_id,
                           capacity=settings.worker_concurrency, lease_seconds=settings.lease_seconds)

    service = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
    server = GrpcServer(settings.listen, [service])
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(consumer, registry, datetime.now(timezone.utc), DRAIN_GRACE_SECONDS), server.server)
    await consumer.start()
    await server.set_serving(True)

    async def on_stop() -> None:
        log.info("draining")
        await consumer.drain(DRAIN_GRACE_SECONDS)
        log.info("drained")
        await nc.close()  # drain() would wait out the pull subscription's lingering request
        await pool.close()

    await server.run(on_stop=on_stop)
