"""Wrapping a gRPC method handler so a check runs before its behaviour (unary and
server-streaming; graphmesh has no client-streaming RPCs)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc

Before = Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]


def run_before(handler: grpc.RpcMethodHandler, before: Before, *,
               request_deserializer: Callable[[bytes], Any] | None = None) -> grpc.RpcMethodHandler:
    """A handler that awaits before(request, context), then the original behaviour.
    Handlers with streaming requests (only gRPC reflection has them) are returned as they are."""
    deserializer = request_deserializer or handler.request_deserializer
    if handler.unary_unary:
        behavior = handler.unary_unary

        async def unary(request, context):
            await before(request, context)
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, deserializer, handler.response_serializer)
    if handler.unary_stream:
        stream_behavior = handler.unary_stream

        async def stream(request, context):
            await before(request, context)
            async for item in stream_behavior(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, deserializer, handler.response_serializer)
    return handler
