"""Wires the api process: RunService and GraphService over one pool and NATS connection."""

from __future__ import annotations

import asyncio
import logging

from graphmesh.auth.setup import make_authenticator
from graphmesh.auth.tokens import TokenStore
from graphmesh.bus import connect_nats
from graphmesh.bus.hub import EventHub
from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.disabled_nodes import DisabledNodes
from graphmesh.execution import RunExecutor
from graphmesh.health import watch_dependencies
from graphmesh.logs import setup_logging
from graphmesh.reconcile import reconcile_forever
from graphmesh.retention.schedule import sweep_forever
from graphmesh.routing import VersionRouter
from graphmesh.rpc.server import GrpcServer
from graphmesh.rpc.tls import ServerTls
from graphmesh.store import ControlStore, RunStore
from graphmesh.store.rollouts import RolloutStore
from graphmesh.sync_runs import SyncRunner
from graphmesh.telemetry.pollers import poll_forever, poll_runs
from graphmesh.telemetry.setup import setup_telemetry
from graphmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    graph_service_pb2,
    graph_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from graphs.registry import Registry
from services.api.auth import AuthServicer
from services.api.graphs import GraphServicer
from services.api.runs import RunServicer

log = logging.getLogger(__name__)


async def main() -> None:
    settings = Settings.from_env()
    setup_logging("api", settings.log_level)
    setup_telemetry("api", settings)
    registry = Registry.default()
    for notice in registry.notices:
        log.warning("%s", notice)
    for spec, error in registry.preload():
        log.error("graph %s@%s failed to load: %s", spec.name, spec.version, error)
    pool = make_pool(settings.database_url, max_size=settings.db_pool_size,
                     timeout=settings.db_timeout_seconds)
    await pool.open(wait=True, timeout=30)
    nc = await connect_nats(settings.nats_url, name="graphmesh-api")
    js = nc.jetstream()
    store = RunStore(pool)
    control = ControlStore(store)
    disabled = DisabledNodes(control)
    rollouts = RolloutStore(store)
    router = VersionRouter(registry, rollouts, store)
    hub = EventHub(nc)
    await hub.start()
    executor = RunExecutor(store=store, js=js, pool=pool, registry=registry,
                           lease_seconds=settings.lease_seconds, ack_wait_seconds=settings.ack_wait_seconds)
    sync_runner = SyncRunner(store=store, js=js, pool=pool, registry=registry, executor=executor,
                             lease_seconds=settings.lease_seconds)

    names = [
        run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
        graph_service_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name,
        auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    ]
    tokens = TokenStore(store)
    server = GrpcServer(settings.listen, names, auth=make_authenticator(settings, store, tokens),
                        tls=ServerTls.from_settings(settings))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(
        RunServicer(store=store, nc=nc, hub=hub, registry=registry, pool=pool, sync_runner=sync_runner,
                    router=router, stopping=server.stopping), server.server)
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(tokens), server.server)
    graph_service_pb2_grpc.add_GraphServiceServicer_to_server(GraphServicer(registry, control, rollouts, router, nc), server.server)
    background = [
        await disabled.start(nc),  # the synchronous path runs graphs here, under the same node guards
        await router.start(nc),
        asyncio.create_task(watch_dependencies(pool, nc, server.set_serving)),
        asyncio.create_task(reconcile_forever(
            store, js, executor, every_seconds=settings.reconcile_seconds, quiet_seconds=settings.orphan_quiet_seconds)),
    ]
    if settings.metrics_listen:
        background.append(asyncio.create_task(poll_forever(poll_runs, store, js)))
    if settings.retention_seconds:
        background.append(asyncio.create_task(sweep_forever(pool, js, registry, every_seconds=settings.retention_seconds)))

    async def on_stop() -> None:
        for task in background:
            task.cancel()

    try:
        await server.run(on_stop=on_stop)
    finally:
        await nc.close()  # drain() would wait out the pull subscription's lingering request
        await pool.close()
