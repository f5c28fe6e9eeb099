"""The api process: RunService, GraphService and AuthService over one pool and NATS
connection, and the reconciler, rollout refresh, node switches and retention sweeps."""

from __future__ import annotations

from graphmesh.auth.setup import make_authenticator
from graphmesh.auth.tokens import TokenStore
from graphmesh.bus.hub import EventHub
from graphmesh.disabled_nodes import DisabledNodes
from graphmesh.execution import RunExecutor
from graphmesh.memory import Memory, open_store
from graphmesh.pollers import poll_forever, poll_runs
from graphmesh.reconcile import reconcile_forever
from graphmesh.registry import Registry
from graphmesh.retention.schedule import sweep_forever
from graphmesh.routing import VersionRouter
from graphmesh.rpc.host import ServiceHost, log_registry, process_settings
from graphmesh.schedules.scheduler import Scheduler
from graphmesh.store import ControlStore, RunStore
from graphmesh.store.rollouts import RolloutStore
from graphmesh.submission import RunSubmitter
from graphmesh.sync_runs import SyncRunner
from graphmesh.v1 import (
    assistant_service_pb2,
    assistant_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    graph_service_pb2,
    graph_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    store_service_pb2,
    store_service_pb2_grpc,
    thread_service_pb2,
    thread_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from graphmesh.webhooks.dispatcher import WebhookDispatcher
from graphmesh.webhooks.targets import OutboundPolicy
from services.api.assistants import AssistantServicer
from services.api.auth import AuthServicer
from services.api.graphs import GraphServicer
from services.api.runs import RunServicer
from services.api.schedules import ScheduleServicer
from services.api.store import StoreServicer
from services.api.threads import ThreadServicer
from services.api.webhooks import WebhookServicer


async def main() -> int:
    settings = process_settings("api")
    host = ServiceHost(settings)
    registry = Registry.default()
    log_registry(registry)
    pool = await host.open_pool()
    nc = await host.connect_bus("graphmesh-api")
    js = nc.jetstream()
    store = RunStore(pool)
    control = ControlStore(store)
    rollouts = RolloutStore(store)
    memory = Memory(open_store(pool, settings))
    registry.use_store(memory.store)  # the synchronous path runs graphs here too
    router = VersionRouter(registry, rollouts, store)
    hub = EventHub(nc)
    await hub.start()
    executor = RunExecutor(store=store, js=js, pool=pool, registry=registry,
                           lease_seconds=settings.lease_seconds, ack_wait_seconds=settings.ack_wait_seconds)
    sync_runner = SyncRunner(store=store, js=js, pool=pool, registry=registry, executor=executor,
                             lease_seconds=settings.lease_seconds)
    tokens = TokenStore(store)
    # Webhooks need the deployment's signing secret; without it, runs may not ask for one.
    webhook_policy = OutboundPolicy.from_settings(settings) if settings.webhook_secret else None
    submitter = RunSubmitter(store=store, nc=nc, registry=registry, router=router, webhook_policy=webhook_policy)
    # Every api replica sends (claims in Postgres share the outbox); built before serving so
    # a malformed secret stops the process at start.
    dispatcher = None if webhook_policy is None else WebhookDispatcher(
        store=store, registry=registry, pool=pool, policy=webhook_policy, secret=settings.webhook_secret,
        timeout_seconds=settings.webhook_timeout_seconds, max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds, backoff_max_seconds=settings.webhook_backoff_max_seconds)

    host.listen([run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
                 graph_service_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name,
                 auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
                 webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
                 schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
                 store_service_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name,
                 thread_service_pb2.DESCRIPTOR.services_by_name["ThreadService"].full_name,
                 assistant_service_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name],
                auth=make_authenticator(settings, store, tokens))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(
        RunServicer(store=store, nc=nc, hub=hub, registry=registry, pool=pool, sync_runner=sync_runner,
                    submitter=submitter, stopping=host.stopping), host.grpc)
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(tokens), host.grpc)
    schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleServicer(store=store, registry=registry, submitter=submitter), host.grpc)
    graph_service_pb2_grpc.add_GraphServiceServicer_to_server(
        GraphServicer(registry, control, rollouts, router, nc), host.grpc)
    webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(store), host.grpc)
    store_service_pb2_grpc.add_StoreServiceServicer_to_server(StoreServicer(memory), host.grpc)
    thread_service_pb2_grpc.add_ThreadServiceServicer_to_server(
        ThreadServicer(store=store, registry=registry, pool=pool, router=router), host.grpc)
    assistant_service_pb2_grpc.add_AssistantServiceServicer_to_server(
        AssistantServicer(store=store, registry=registry), host.grpc)

    # The synchronous path runs graphs here, under the same node guards as the workers.
    host.supervise("disabled nodes refresh", await DisabledNodes(control).start(nc))
    host.supervise("rollout refresh", await router.start(nc))
    host.watch_dependencies(pool, nc)
    host.supervise("reconciler", reconcile_forever(
        store, js, executor, every_seconds=settings.reconcile_seconds, quiet_seconds=settings.orphan_quiet_seconds))
    if settings.metrics_listen:
        host.supervise("run metrics poller", poll_forever(poll_runs, store, js))
    if dispatcher is not None:
        host.supervise("webhook sender", dispatcher.run(settings.webhook_seconds))
    if settings.retention_seconds:
        host.supervise("retention sweep", sweep_forever(pool, js, registry, every_seconds=settings.retention_seconds))
    if settings.scheduler_seconds:
        scheduler = Scheduler(runs=store, submitter=submitter, pool=pool, js=js,
                              missed_after_seconds=settings.schedule_missed_after_seconds)
        host.supervise("scheduler", scheduler.run_forever(settings.scheduler_seconds))
    if settings.store_sweep_minutes:
        host.supervise("store ttl sweep", memory.sweep_forever(settings.store_sweep_minutes))
    return await host.run()
