"""What every route of the gateway reaches graphmesh through: one grpc.aio channel to the
api and one to the review tier, their typed stubs, and the caller's credentials turned
into gRPC metadata. Routes get it as `request.app.state.gateway`.

The gateway holds no authority of its own: every call carries the HTTP caller's token, so
the api's interceptors authenticate and authorize it exactly as they do a CLI call."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import grpc
from starlette.requests import Request

from graphmesh.client import aio_channel
from graphmesh.config import Settings
from graphmesh.v1 import (
    assistant_service_pb2_grpc,
    graph_service_pb2_grpc,
    review_service_pb2_grpc,
    run_service_pb2_grpc,
    schedule_service_pb2_grpc,
    store_service_pb2_grpc,
    thread_service_pb2_grpc,
    webhook_service_pb2_grpc,
)

# W3C trace context headers passed on as metadata: the api's OpenTelemetry interceptor
# continues the caller's trace.
# The deadline of each unary gRPC call the gateway makes (streams have none).
CALL_TIMEOUT = 30.0
TRACE_HEADERS = ("traceparent", "tracestate")
# How long a system assistant read for one caller is used again without asking the api, and
# how many (caller, assistant) pairs are kept.
SYSTEM_ASSISTANT_TTL_SECONDS = 60.0
SYSTEM_ASSISTANT_ENTRIES = 1024


class SystemAssistantCache:
    """Graphs' system assistants as the api answered GetAssistant for one caller, by the id
    or graph name asked for. They never change (UpdateAssistant and DeleteAssistant refuse
    them), so a run needs not read one each time; the key holds the caller's credentials
    because what an assistant read shows depends on the graphs the caller covers, and the
    TTL bounds how long a change of those (or of the deployment's graphs) goes unseen.
    Other assistants can change and are never kept."""

    def __init__(self, ttl: float = SYSTEM_ASSISTANT_TTL_SECONDS, entries: int = SYSTEM_ASSISTANT_ENTRIES) -> None:
        self._ttl = ttl
        self._entries = entries
        self._kept: OrderedDict[tuple, tuple[float, object]] = OrderedDict()

    def get(self, credentials: str, assistant_id: str):
        key = (credentials, assistant_id)
        found = self._kept.get(key)
        if found is None:
            return None
        expires, assistant = found
        if expires < time.monotonic():
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        return assistant

    def put(self, credentials: str, assistant_id: str, assistant) -> None:
        self._kept[(credentials, assistant_id)] = (time.monotonic() + self._ttl, assistant)
        self._kept.move_to_end((credentials, assistant_id))
        while len(self._kept) > self._entries:
            self._kept.popitem(last=False)


class Gateway:
    """gRPC stubs shared by every request; each call passes call_metadata(request).
    Build it in the event loop that serves the app: grpc.aio channels belong to the loop
    they are made in (services/gateway/server.py does)."""

    def __init__(self, settings: Settings, *, api_channel: grpc.aio.Channel | None = None,
                 review_channel: grpc.aio.Channel | None = None) -> None:
        if not settings.api_address and api_channel is None:
            raise ValueError("the gateway needs the api's address: set GRAPHMESH_API_ADDRESS (host:port)")
        self.settings = settings
        # Set when the process begins to stop: long streams end so clients reconnect to
        # another replica (with Last-Event-ID) instead of holding up the shutdown.
        self.stopping = asyncio.Event()
        self.system_assistants = SystemAssistantCache()
        # token="": no token of this process's own; each call carries its caller's.
        self._api_channel = api_channel or aio_channel(settings.api_address, token="")
        review_address = settings.review_address
        self._review_channel = review_channel or (aio_channel(review_address, token="") if review_address else None)
        ch = self.api_channel = self._api_channel  # public for stubs a route needs once (health)
        self.runs = run_service_pb2_grpc.RunServiceStub(ch)
        self.graphs = graph_service_pb2_grpc.GraphServiceStub(ch)
        self.threads = thread_service_pb2_grpc.ThreadServiceStub(ch)
        self.assistants = assistant_service_pb2_grpc.AssistantServiceStub(ch)
        self.schedules = schedule_service_pb2_grpc.ScheduleServiceStub(ch)
        self.store = store_service_pb2_grpc.StoreServiceStub(ch)
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(ch)
        # None when no review address is configured: routes that decide interrupts answer 503.
        self.review = (review_service_pb2_grpc.ReviewServiceStub(self._review_channel)
                       if self._review_channel is not None else None)

    def call_metadata(self, request: Request) -> tuple[tuple[str, str], ...]:
        """The caller's credentials as the api expects them (`authorization: Bearer <token>`),
        from `Authorization: Bearer X` or `X-Api-Key: X`, plus the trace context headers."""
        metadata: list[tuple[str, str]] = []
        authorization = request.headers.get("authorization", "").strip()
        api_key = request.headers.get("x-api-key", "").strip()
        if authorization:
            # Passed on as sent: a scheme other than Bearer is refused by the api (401).
            metadata.append(("authorization", authorization))
        elif api_key:
            metadata.append(("authorization", f"Bearer {api_key}"))
        for header in TRACE_HEADERS:
            value = request.headers.get(header)
            if value:
                metadata.append((header, value))
        return tuple(metadata)

    async def close(self) -> None:
        await self._api_channel.close()
        if self._review_channel is not None:
            await self._review_channel.close()
