"""Dependency health: each process pings Postgres and checks its NATS connection every
second, reports the result on the gRPC health service, and lets its loops pause while a
dependency is away (a worker takes no runs it could not record)."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool

from graphmesh.store.health import ping
from graphmesh.telemetry.metrics import set_snapshot

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


async def postgres_ok(pool: AsyncConnectionPool, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            async with pool.connection(timeout=timeout) as conn:
                await ping(conn)
        return True
    except Exception:
        return False


async def watch_dependencies(pool: AsyncConnectionPool, nc, on_change: Callable[[bool], Awaitable[None]]) -> None:
    """Calls on_change(healthy) at start and whenever health flips."""
    healthy: bool | None = None
    while True:
        bus, database = nc.is_connected, await postgres_ok(pool)
        set_snapshot("graphmesh.dependency.up", {(("dependency", "nats"),): float(bus),
                                                 (("dependency", "postgres"),): float(database)})
        ok = bus and database
        if ok != healthy:
            if healthy is not None:
                log.warning("dependencies %s", "recovered" if ok else "unavailable (Postgres or NATS)")
            healthy = ok
            await on_change(ok)
        await asyncio.sleep(CHECK_SECONDS)


def serving_status(channel, timeout: float = 1.0) -> str:
    """One grpc.health.v1 Check of a server (service ""): its status name, or what failed."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as err:
        return f"unreachable ({err.code().name}: {err.details()})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
