"""A real server's refusals come back, through graphmesh.rpc.errors.from_rpc_error, as the
graphmesh.errors class of their status with the server's code and run id."""

from __future__ import annotations

import grpc
import pytest

from graphmesh.client import api_client
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.rpc.errors import from_rpc_error
from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, create_run, new_thread, wait_status


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


def _refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_an_unknown_graph_comes_back_as_not_found(client):
    err = _refused(lambda: create_run(client, "no_such_graph", {"text": "hi"}))
    exc = from_rpc_error(err)
    assert type(exc) is NotFound and exc.code == "GRAPH_NOT_FOUND" and exc.run_id == ""
    assert "no_such_graph" in exc.message and exc.message == err.details()


def test_input_over_the_graphs_limit_comes_back_as_invalid_argument(client):
    err = _refused(lambda: create_run(client, "tiny", {"text": "x" * 70000}))  # tiny takes 65536 bytes
    exc = from_rpc_error(err)
    assert type(exc) is InvalidArgument and exc.code == "INPUT_TOO_LARGE" and "65536" in exc.message


def test_a_refusal_about_a_run_carries_the_run_id(client):
    run = create_run(client, "tiny", {"text": "hi"}, thread_id=new_thread("roundtrip"))
    wait_status(client, run.run_id, COMPLETED)
    err = _refused(lambda: client.runs.RetryRun(pb.RetryRunRequest(run_id=run.run_id), timeout=30))
    exc = from_rpc_error(err)
    assert type(exc) is FailedPrecondition
    assert (exc.code, exc.run_id) == ("RUN_NOT_RETRYABLE", run.run_id)
