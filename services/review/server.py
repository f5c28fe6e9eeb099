"""Wires the review process: ReviewService, approval expiry and the outbox relay."""

from __future__ import annotations

import asyncio

from graphmesh.approval_expiry import expire_forever
from graphmesh.auth.setup import make_authenticator
from graphmesh.bus import connect_nats
from graphmesh.bus.approvals import relay_outbox_forever
from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.health import watch_dependencies
from graphmesh.logs import setup_logging
from graphmesh.rpc.server import GrpcServer
from graphmesh.rpc.tls import ServerTls
from graphmesh.store import ApprovalStore, RunStore
from graphmesh.telemetry.pollers import poll_approvals, poll_forever
from graphmesh.telemetry.setup import setup_telemetry
from graphmesh.v1 import review_service_pb2, review_service_pb2_grpc
from services.review.servicer import ReviewServicer


async def main() -> None:
    settings = Settings.from_env()
    setup_logging("review", settings.log_level)
    setup_telemetry("review", settings)
    pool = make_pool(settings.database_url, max_size=settings.db_pool_size, timeout=settings.db_timeout_seconds)
    await pool.open(wait=True, timeout=30)
    nc = await connect_nats(settings.nats_url, name="graphmesh-review")
    js = nc.jetstream()
    approvals = ApprovalStore(RunStore(pool))
    name = review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name
    server = GrpcServer(settings.listen, [name], auth=make_authenticator(settings, approvals.runs),
                        tls=ServerTls.from_settings(settings))
    servicer = ReviewServicer(approvals=approvals, js=js, stopping=server.stopping)
    review_service_pb2_grpc.add_ReviewServiceServicer_to_server(servicer, server.server)
    background = [
        asyncio.create_task(expire_forever(servicer, approvals)),
        asyncio.create_task(relay_outbox_forever(js, approvals)),
        asyncio.create_task(watch_dependencies(pool, nc, server.set_serving)),
    ]
    if settings.metrics_listen:
        background.append(asyncio.create_task(poll_forever(poll_approvals, approvals.runs)))

    async def on_stop() -> None:
        for task in background:
            task.cancel()

    try:
        await server.run(on_stop=on_stop)
    finally:
        await nc.close()
        await pool.close()
