"""Wires the review process. Its RPCs answer UNIMPLEMENTED until the review loop lands."""

from __future__ import annotations

from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.logs import setup_logging
from graphmesh.rpc.server import GrpcServer
from graphmesh.v1 import review_service_pb2, review_service_pb2_grpc
from services.review.servicer import ReviewServicer


async def main() -> None:
    settings = Settings.from_env()
    setup_logging("review", settings.log_level)
    # Opened now so the process fails fast, and reports health, on a bad database URL.
    pool = make_pool(settings.database_url, max_size=4)
    await pool.open(wait=True, timeout=30)
    name = review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name
    server = GrpcServer(settings.listen, [name])
    review_service_pb2_grpc.add_ReviewServiceServicer_to_server(ReviewServicer(), server.server)
    await server.set_serving(True)
    try:
        await server.run()
    finally:
        await pool.close()
