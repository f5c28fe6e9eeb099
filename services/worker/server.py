"""Wires a worker process: settings, Postgres pool, NATS, registry, consumer, gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone

from graphmesh.auth.setup import make_authenticator
from graphmesh.bus import connect_nats
from graphmesh.bus.control import on_cancel
from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.disabled_nodes import DisabledNodes
from graphmesh.execution import RunExecutor
from graphmesh.health import watch_dependencies
from graphmesh.logs import setup_logging
from graphmesh.rpc.server import GrpcServer
from graphmesh.rpc.tls import ServerTls
from graphmesh.store import ControlStore, RunStore
from graphmesh.telemetry.setup import setup_telemetry
from graphmesh.v1 import worker_service_pb2, worker_service_pb2_grpc
from graphmesh.worker.consumer import JobConsumer
from graphmesh.worker.roster import announce_forever
from graphs.registry import Registry
from services.worker.servicer import WorkerServicer

log = logging.getLogger(__name__)

DRAIN_GRACE_SECONDS = 30.0


async def main() -> None:
    settings = Settings.from_env()
    setup_logging(settings.worker_id, settings.log_level)
    setup_telemetry("worker", settings, instance=settings.worker_id)
    started_at = datetime.now(timezone.utc)
    registry = Registry.default()
    for notice in registry.notices:
        log.warning("%s", notice)
    for spec, error in registry.preload():
        log.error("graph %s@%s failed to load: %s", spec.name, spec.version, error)
    pool = make_pool(settings.database_url, max_size=settings.db_pool_size, timeout=settings.db_timeout_seconds)
    await pool.open(wait=True, timeout=30)
    nc = await connect_nats(settings.nats_url, name=settings.worker_id)
    js = nc.jetstream()
    store = RunStore(pool)
    control = ControlStore(store)
    executor = RunExecutor(store=store, js=js, pool=pool, registry=registry,
                           lease_seconds=settings.lease_seconds, ack_wait_seconds=settings.ack_wait_seconds)
    consumer = JobConsumer(js=js, store=store, executor=executor, worker_id=settings.worker_id,
                           capacity=settings.worker_concurrency, lease_seconds=settings.lease_seconds,
                           max_deliveries=settings.max_deliveries, max_job_failures=settings.max_job_failures)

    service = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
    server = GrpcServer(settings.listen, [service], auth=make_authenticator(settings, store),
                        tls=ServerTls.from_settings(settings))
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(consumer, registry, started_at, DRAIN_GRACE_SECONDS), server.server)

    async def on_health(ok: bool) -> None:
        consumer.dependencies_ok = ok
        await server.set_serving(ok)

    background = [
        await DisabledNodes(control).start(nc),
        asyncio.create_task(watch_dependencies(pool, nc, on_health)),
        asyncio.create_task(announce_forever(control, consumer, address=server.address, registry=registry,
                                             started_at=started_at)),
    ]
    await on_cancel(nc, consumer.cancel)
    await consumer.start()

    async def on_stop() -> None:
        log.info("draining")
        await consumer.start_drain(DRAIN_GRACE_SECONDS)
        log.info("drained")
        for task in background:
            task.cancel()
        with contextlib.suppress(Exception):  # it ages out of the roster anyway
            await control.forget_worker(settings.worker_id)
        await nc.close()
        await pool.close()

    await server.run(on_stop=on_stop)
