"""graphmesh.rpc.errors.from_rpc_error: a failed call back into the graphmesh.errors class,
through a real gRPC server that has the error interceptor."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from graphmesh.errors import (
    FailedPrecondition,
    GraphmeshError,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from graphmesh.rpc.errors import ErrorInterceptor, from_rpc_error

METHOD = "/test.Errors/Fail"


def _call_failing(raised: Exception) -> grpc.RpcError:
    """Serves one method that raises `raised`, calls it, returns the client's RpcError."""

    async def fail(request: bytes, context) -> bytes:
        raise raised

    handler = grpc.method_handlers_generic_handler(
        "test.Errors", {"Fail": grpc.unary_unary_rpc_method_handler(fail)})

    async def run() -> grpc.RpcError:
        server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    await channel.unary_unary(METHOD)(b"", timeout=10)
                except grpc.RpcError as err:
                    return err
                raise AssertionError("the call succeeded")
        finally:
            await server.stop(None)

    return asyncio.run(run())


@pytest.mark.parametrize("raised", [
    NotFound("graph 'x' is not registered", code="GRAPH_NOT_FOUND"),
    FailedPrecondition("only FAILED or CANCELLED runs can be retried", code="RUN_NOT_RETRYABLE", run_id="r-1"),
    InvalidArgument("input is not an object", code="INPUT_NOT_OBJECT"),
    Unauthenticated("unknown or revoked token", code="INVALID_TOKEN"),
    Unavailable("Postgres is unreachable"),  # no code given: the default
], ids=lambda e: type(e).__name__)
def test_a_server_error_comes_back_as_its_class_with_its_code(raised):
    err = _call_failing(raised)
    back = from_rpc_error(err)
    assert type(back) is type(raised)
    assert (back.code, back.run_id, back.message) == (raised.code, raised.run_id, raised.message)
    assert back.status == raised.status == err.code()


def test_an_unexpected_server_error_comes_back_as_internal_without_a_code():
    err = _call_failing(KeyError("a bug"))
    back = from_rpc_error(err)
    assert type(back) is GraphmeshError
    assert back.status == grpc.StatusCode.INTERNAL and back.code == "INTERNAL"
    assert "internal error (ref" in back.message and "KeyError" not in back.message


def test_a_status_that_no_class_stands_for_keeps_its_status():
    class Cancelled(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.CANCELLED

        def details(self):
            return "the call was cancelled"

        def trailing_metadata(self):
            return ()

    back = from_rpc_error(Cancelled())
    assert type(back) is GraphmeshError
    assert (back.status, back.code, back.message) == (grpc.StatusCode.CANCELLED, "CANCELLED", "the call was cancelled")
    assert GraphmeshError.status == grpc.StatusCode.INTERNAL  # the class itself is untouched
