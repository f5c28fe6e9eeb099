"""One server interceptor that turns GraphmeshError into gRPC status codes, and the client
helpers that read them back (error_code, from_rpc_error)."""

from __future__ import annotations

import logging
import uuid

import grpc
from grpc.aio import AbortError

from graphmesh.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    GraphmeshError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

log = logging.getLogger(__name__)

ERROR_CODE_KEY = "gm-error-code"
RUN_ID_KEY = "gm-run-id"
# Status messages travel percent-encoded in HTTP/2 trailers (up to 3 bytes per byte); one
# over the transport's 8 KB limit (echoing a huge input) would be dropped and the caller
# would see a different error.
MAX_MESSAGE_BYTES = 1500


def _clip(message: str) -> str:
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[:MAX_MESSAGE_BYTES].decode(errors="ignore") + " ... (cut)"


async def _abort(context: grpc.aio.ServicerContext, exc: Exception):
    if isinstance(exc, GraphmeshError):
        context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code), (RUN_ID_KEY, exc.run_id)))
        await context.abort(exc.status, _clip(exc.message))
    ref = uuid.uuid4().hex[:12]
    log.exception("unexpected error (ref %s)", ref)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref}); see the service log")


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary:
            behavior = handler.unary_unary

            async def unary(request, context):
                try:
                    return await behavior(request, context)
                except AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            stream_behavior = handler.unary_stream

            async def stream(request, context):
                try:
                    async for item in stream_behavior(request, context):
                        yield item
                except AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


def error_code(err: grpc.RpcError) -> str:
    """The graphmesh error code carried by a failed call, or its gRPC status name."""
    for key, value in err.trailing_metadata() or ():
        if key == ERROR_CODE_KEY:
            return value
    return err.code().name


_BY_STATUS: dict[grpc.StatusCode, type[GraphmeshError]] = {cls.status: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted, DeadlineExceeded,
    Unavailable, PermissionDenied, Unauthenticated, Unimplemented)}


def from_rpc_error(err: grpc.RpcError) -> GraphmeshError:
    """The exception a failed call stands for: the graphmesh.errors class of its status
    (NotFound for NOT_FOUND, ...), with the server's `code` (gm-error-code; else the status
    name), `run_id` (gm-run-id) and message (the status details). A status no class stands
    for (INTERNAL, CANCELLED, UNKNOWN, ...) gives a GraphmeshError whose `status` is it.

        try:
            stub.GetRun(request)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from err
    """
    status = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    metadata = dict(err.trailing_metadata() or ()) if callable(getattr(err, "trailing_metadata", None)) else {}
    details = (err.details() if callable(getattr(err, "details", None)) else None) or str(err)
    cls = _BY_STATUS.get(status, GraphmeshError)
    exc = cls(details, code=metadata.get(ERROR_CODE_KEY) or status.name, run_id=metadata.get(RUN_ID_KEY, ""))
    if cls is GraphmeshError:
        exc.status = status
    return exc


async def end_stream_for_shutdown(context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect with your last sequence")
