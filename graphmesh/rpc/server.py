"""Building a graphmesh gRPC server: interceptors, health, reflection, its port. The
process around it (signals, shutdown, supervised tasks) is graphmesh/rpc/host.py."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from graphmesh.auth.authenticator import Authenticator
from graphmesh.rpc.auth_interceptor import AuthInterceptor
from graphmesh.rpc.errors import ErrorInterceptor
from graphmesh.rpc.tls import ServerTls
from graphmesh.rpc.validation import ValidationInterceptor

log = logging.getLogger(__name__)


class GrpcServer:
    def __init__(self, listen: str, service_names: list[str], *, auth: Authenticator,
                 tls: ServerTls | None = None, shared_listen: str = "") -> None:
        self.server = grpc.aio.server(
            # Tracing outermost, so the server span records the status the error mapping set;
            # authentication inside the error mapping, so its refusals get their codes.
            interceptors=[aio_server_interceptor(), ErrorInterceptor(), AuthInterceptor(auth),
                          ValidationInterceptor()],
            # SO_REUSEPORT only for replicas that share an address on purpose: otherwise a
            # taken port must fail loudly rather than split traffic with a stranger.
            options=[("grpc.so_reuseport", 1 if shared_listen else 0),
                     ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.port = self._add_port(listen, tls)
        self.address = f"{listen.rsplit(':', 1)[0]}:{self.port}"
        if shared_listen:
            self._add_port(shared_listen, tls)

    def _add_port(self, listen: str, tls: ServerTls | None) -> int:
        port = (self.server.add_secure_port(listen, tls.credentials()) if tls is not None
                else self.server.add_insecure_port(listen))
        if port == 0:
            raise RuntimeError(f"cannot listen on {listen}")
        return port

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._service_names]:
            await self.health.set(name, status)
