"""A worker process: the job consumer, its roster heartbeat and WorkerService. On SIGTERM
it drains: no new runs, active ones get GRAPHMESH_DRAIN_GRACE_SECONDS, the rest are handed back."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone

from graphmesh.auth.setup import make_authenticator
from graphmesh.bus.control import on_cancel
from graphmesh.disabled_nodes import DisabledNodes
from graphmesh.execution import RunExecutor
from graphmesh.memory import open_store
from graphmesh.registry import Registry
from graphmesh.rpc.host import ServiceHost, log_registry, process_settings
from graphmesh.store import ControlStore, RunStore
from graphmesh.v1 import worker_service_pb2, worker_service_pb2_grpc
from graphmesh.worker.consumer import JobConsumer
from graphmesh.worker.roster import announce_forever
from services.worker.servicer import WorkerServicer

log = logging.getLogger(__name__)



async def main() -> int:
    settings = process_settings("worker", per_instance=True)
    host = ServiceHost(settings)
    started_at = datetime.now(timezone.utc)
    registry = Registry.default()
    log_registry(registry)
    pool = await host.open_pool()
    nc = await host.connect_bus(settings.worker_id)
    js = nc.jetstream()
    store = RunStore(pool)
    control = ControlStore(store)
    # Long-term memory: graphs get LangGraph's Postgres store over the same pool.
    registry.use_store(open_store(pool, settings))
    executor = RunExecutor(store=store, js=js, pool=pool, registry=registry,
                           lease_seconds=settings.lease_seconds, ack_wait_seconds=settings.ack_wait_seconds)
    consumer = JobConsumer(js=js, store=store, executor=executor, worker_id=settings.worker_id,
                           capacity=settings.worker_concurrency, lease_seconds=settings.lease_seconds,
                           max_deliveries=settings.max_deliveries, max_job_failures=settings.max_job_failures)

    host.listen([worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name],
                auth=make_authenticator(settings, store))
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(consumer, registry, started_at, settings.drain_grace_seconds), host.grpc)

    def on_health(ok: bool) -> None:
        consumer.dependencies_ok = ok  # no run should burn a delivery while a dependency is away

    host.supervise("disabled nodes refresh", await DisabledNodes(control).start(nc))
    host.watch_dependencies(pool, nc, also=on_health)
    host.supervise("worker heartbeat", announce_forever(control, consumer, address=host.advertised_address,
                                                        registry=registry, started_at=started_at))
    await on_cancel(nc, consumer.cancel)
    host.supervise("job consumer", await consumer.start())

    async def drain() -> None:
        log.info("draining")
        await consumer.start_drain(settings.drain_grace_seconds)
        log.info("drained")

    async def forget() -> None:
        with contextlib.suppress(Exception):  # it ages out of the roster anyway
            await control.forget_worker(settings.worker_id)

    host.on_stop(drain)
    host.on_close(forget)  # before the bus and the pool close
    return await host.run()
