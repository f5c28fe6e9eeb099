"""GET /ok (liveness; ?check_db=1 also asks the api's gRPC health) and GET /info (what
clients such as agent-chat-ui call to check that a server is there)."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version

import grpc
import langgraph.version
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from services.gateway.jsonio import json_response, query_bool

HEALTH_TIMEOUT_SECONDS = 3.0


def _graphmesh_version() -> str:
    try:
        return version("graphmesh")
    except PackageNotFoundError:
        return "0.0.0"


async def ok(request: Request):
    # Liveness does not depend on the api: a gateway whose api is down restarts nothing.
    if not query_bool(request, "check_db"):
        return json_response({"ok": True})
    gateway = request.app.state.gateway
    stub = health_pb2_grpc.HealthStub(gateway.api_channel)
    try:
        reply = await asyncio.wait_for(stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_SECONDS),
                                       HEALTH_TIMEOUT_SECONDS)
        healthy = reply.status == health_pb2.HealthCheckResponse.SERVING
    except (grpc.RpcError, asyncio.TimeoutError):
        healthy = False
    return json_response({"ok": healthy, "services": {"api": "healthy" if healthy else "unhealthy"}},
                         status=200 if healthy else 500)


async def info(request: Request):
    return json_response({
        "version": _graphmesh_version(),
        "langgraph_py_version": langgraph.version.__version__,
        "flags": {
            "assistants": True,
            "crons": True,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
            "langsmith_tracing_session_on_runs": False,
        },
        "host": {"kind": "graphmesh", "project_id": None, "host_revision_id": None, "revision_id": None,
                 "tenant_id": None},
        "metadata": {"server": "graphmesh-gateway"},
    })


def routes() -> list[BaseRoute]:
    return [
        Route("/ok", ok, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
    ]
