"""The one factory for gRPC channels and typed stubs, for the CLI, tests and benchmarks.

Credentials: a bearer token (argument, else GRAPHMESH_TOKEN, else the CLI config file that
`graphmesh up` writes) goes into every call's metadata; with GRAPHMESH_TLS_CA_FILE set (and
GRAPHMESH_TLS_CLIENT_CERT_FILE / _KEY_FILE for mutual TLS) channels use TLS."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from graphmesh.rpc.tls import client_credentials
from graphmesh.v1 import (
    auth_service_pb2_grpc,
    graph_service_pb2_grpc,
    review_service_pb2_grpc,
    run_service_pb2_grpc,
    worker_service_pb2_grpc,
)

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]


def config_path() -> Path:
    """The CLI's config file: GRAPHMESH_CLI_CONFIG, else ~/.config/graphmesh/config.json."""
    if os.environ.get("GRAPHMESH_CLI_CONFIG"):
        return Path(os.environ["GRAPHMESH_CLI_CONFIG"])
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "graphmesh" / "config.json"


def default_token() -> str:
    if os.environ.get("GRAPHMESH_TOKEN"):
        return os.environ["GRAPHMESH_TOKEN"]
    try:
        return str(json.loads(config_path().read_text()).get("token", ""))
    except (OSError, ValueError):
        return ""


def save_cli_config(api: str, token: str) -> Path:
    """Writes the CLI config (owner-only permissions): the api address and a token."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"api": api, "token": token}, f)
    return path


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _AioHeader:
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details):
        return details._replace(metadata=grpc.aio.Metadata(*(details.metadata or ()), self._header))


# grpc.aio files an interceptor under one call type only: one class per type.
class _AioBearerUnary(_AioHeader, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioBearerStream(_AioHeader, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)


def _aio_bearer(token: str) -> list:
    return [_AioBearerUnary(token), _AioBearerStream(token)]


def _tls() -> grpc.ChannelCredentials | None:
    ca = os.environ.get("GRAPHMESH_TLS_CA_FILE")
    if not ca:
        return None
    return client_credentials(ca, os.environ.get("GRAPHMESH_TLS_CLIENT_CERT_FILE", ""),
                              os.environ.get("GRAPHMESH_TLS_CLIENT_KEY_FILE", ""))


def channel(address: str, token: str | None = None) -> grpc.Channel:
    token = default_token() if token is None else token
    creds = _tls()
    ch = (grpc.secure_channel(address, creds, options=CHANNEL_OPTIONS) if creds
          else grpc.insecure_channel(address, options=CHANNEL_OPTIONS))
    return grpc.intercept_channel(ch, _Bearer(token)) if token else ch


@dataclass
class ApiClient:
    channel: grpc.Channel
    runs: run_service_pb2_grpc.RunServiceStub
    graphs: graph_service_pb2_grpc.GraphServiceStub

    def close(self) -> None:
        self.channel.close()


def api_client(address: str, token: str | None = None) -> ApiClient:
    ch = channel(address, token)
    return ApiClient(ch, run_service_pb2_grpc.RunServiceStub(ch), graph_service_pb2_grpc.GraphServiceStub(ch))


def aio_channel(address: str, token: str | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel with the same credentials as channel()."""
    token = default_token() if token is None else token
    creds = _tls()
    interceptors = _aio_bearer(token) if token else None
    if creds:
        return grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)


def async_api_client(address: str, token: str | None = None) -> ApiClient:
    ch = aio_channel(address, token)
    return ApiClient(ch, run_service_pb2_grpc.RunServiceStub(ch), graph_service_pb2_grpc.GraphServiceStub(ch))


def worker_stub(address: str, token: str | None = None) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel(address, token))


def review_stub(address: str, token: str | None = None) -> review_service_pb2_grpc.ReviewServiceStub:
    return review_service_pb2_grpc.ReviewServiceStub(channel(address, token))


def auth_stub(address: str, token: str | None = None) -> auth_service_pb2_grpc.AuthServiceStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel(address, token))
