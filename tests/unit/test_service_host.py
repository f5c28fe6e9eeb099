"""graphmesh/rpc/host.py: a supervised background task that dies turns the service
NOT_SERVING and makes it exit 1; a signal stops it in order and it exits 0."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphmesh.auth.authenticator import Authenticator
from graphmesh.config import Settings
from graphmesh.rpc.host import ServiceHost

SERVICE = "graphmesh.v1.WorkerService"


def make_host() -> ServiceHost:
    host = ServiceHost(Settings(listen="127.0.0.1:0"))
    host.listen([SERVICE], auth=Authenticator("none", None, None))
    return host


async def health(address: str, service: str = "") -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                timeout=2)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_a_dying_task_makes_the_service_not_serving_and_exit_1(caplog):
    caplog.set_level(logging.INFO)

    async def scenario():
        host = make_host()
        die = asyncio.Event()
        seen: list[str] = []
        order: list[str] = []

        async def consumer_loop():
            await die.wait()
            raise RuntimeError("consumer loop broke")

        async def forever():
            try:
                await asyncio.Event().wait()
            finally:
                order.append("cancelled")

        async def on_stop():
            # Health is already NOT_SERVING while the stop hooks run (a worker's drain).
            seen.append(await health(host.address, SERVICE))
            order.append("on_stop")

        async def on_close():
            order.append("closed")

        host.supervise("job consumer", consumer_loop())
        host.supervise("heartbeat", forever())
        host.on_stop(on_stop)
        host.on_close(on_close)
        await host.set_serving(True)
        running = asyncio.create_task(host.run(grace=0.1))
        await asyncio.sleep(0.2)
        seen.append(await health(host.address, SERVICE))
        die.set()
        code = await asyncio.wait_for(running, 10)
        # A dependency recovering later must not bring a stopping service back.
        await host.set_serving(True)
        return code, seen, order, host.failed, host.stopping.is_set()

    code, seen, order, failed, stopping = asyncio.run(scenario())
    assert code == 1
    assert seen == ["SERVING", "NOT_SERVING"]
    assert order == ["on_stop", "cancelled", "closed"]
    assert failed == ["job consumer"]
    assert stopping
    [record] = [r for r in caplog.records if "background task job consumer died" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None  # with its traceback


def test_a_task_that_returns_or_a_signal_is_not_a_failure():
    async def scenario():
        host = make_host()

        async def switched_off():
            return None  # e.g. the retention sweeper with nothing to sweep

        host.supervise("retention sweep", switched_off())
        await host.set_serving(True)
        running = asyncio.create_task(host.run(grace=0.1))
        await asyncio.sleep(0.2)
        serving = await health(host.address)
        os.kill(os.getpid(), signal.SIGTERM)
        return await asyncio.wait_for(running, 10), serving, host.failed

    code, serving, failed = asyncio.run(scenario())
    assert (code, serving, failed) == (0, "SERVING", [])
