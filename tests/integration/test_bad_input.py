"""Bad requests get precise gRPC errors, create no run records, and crash nothing."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphmesh.client import api_client
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    create_run,
    list_all_runs,
    new_thread,
    rpc_error,
    stream_events,
    struct,
    wait_status,
)

GRAPHS = ("tiny", "research_assistant", "approval_workflow")
TINY_LIMIT = 65536


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


def _counts(client) -> dict[str, int]:
    return {g: len(list_all_runs(client, page_size=1000, graph=g)) for g in GRAPHS}


@pytest.fixture(scope="module")
def untouched(mesh, client):
    """Checks, after this module's tests, that the api still serves, that nothing restarted, and
    that no rejected request left a run record behind."""
    api_pid = mesh.pid("api")
    before = _counts(client)
    accepted: list[str] = []  # graphs of the good runs tests create on purpose
    yield accepted
    assert mesh.pid("api") == api_pid, "the api process restarted"
    assert all(mesh.pid(name) is not None for name in mesh.service_names)
    expected = {g: n + accepted.count(g) for g, n in before.items()}
    assert _counts(client) == expected, "a rejected request created a run record"


def test_unknown_graph(client, untouched):
    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND") as err:
        create_run(client, "no_such_graph", {"text": "hi"})
    assert "no_such_graph" in err["details"] and "tiny" in err["details"]  # names the known graphs
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.InvokeRun(pb.InvokeRunRequest(graph="no_such_graph", input=struct({"text": "hi"})), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        create_run(client, "tiny", {"text": "hi"}, graph_version="999")


@pytest.mark.parametrize("run_id", [str(uuid.uuid4()), "not-a-run-id", "", "'; DROP TABLE gm_runs; --"],
                         ids=["uuid", "garbage", "empty", "sql"])
def test_unknown_run(client, untouched, run_id):
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        stream_events(client, run_id)


def test_unknown_thread_state(client, untouched):
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=new_thread("nobody")), timeout=10)


@pytest.mark.parametrize("graph, inputs, reason", [
    ("tiny", {}, "missing required key 'text'"),
    ("tiny", {"txt": "typo"}, "text"),
    ("tiny", {"text": "hi", "bogus": 1}, "bogus"),
    ("tiny", {"text": 5}, "text"),
    ("tiny", {"text": ["a", "b"]}, "text"),
    ("research_assistant", {"question": "q", "delay_seconds": "slow"}, "delay_seconds"),
    ("research_assistant", {"question": "q", "max_results": 2.5}, "max_results"),
    ("research_assistant", {"delay_seconds": 0}, "question"),
    ("approval_workflow", {"action": "refund"}, "target"),
], ids=["tiny-empty", "tiny-missing", "tiny-unknown-key", "tiny-int", "tiny-list", "research-str-for-float",
        "research-fraction-for-int", "research-missing", "approval-missing"])
def test_input_rejected_by_schema(client, untouched, graph, inputs, reason):
    thread = new_thread("bad")
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT") as err:
        create_run(client, graph, inputs, thread_id=thread)
    assert reason in err["details"], err["details"]
    # A rejected create leaves no thread behind either.
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread), timeout=10)


def test_input_rejected_on_sync_path(client, untouched):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT") as err:
        client.runs.InvokeRun(pb.InvokeRunRequest(graph="tiny", input=struct({"text": 1})), timeout=10)
    assert "text" in err["details"]


def test_input_over_size_limit(client, untouched):
    big = {"text": "x" * (TINY_LIMIT + 10)}
    with pytest.raises(grpc.RpcError) as caught:
        create_run(client, "tiny", big)
    err = caught.value
    assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), err
    assert str(TINY_LIMIT) in err.details(), err.details()
    with pytest.raises(grpc.RpcError) as caught:
        client.runs.InvokeRun(pb.InvokeRunRequest(graph="tiny", input=struct(big)), timeout=10)
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert str(TINY_LIMIT) in caught.value.details()


def test_input_far_over_grpc_message_limit(client, untouched):
    """Bigger than gRPC's default 4 MiB message: refused cleanly, api unharmed."""
    with pytest.raises(grpc.RpcError) as caught:
        create_run(client, "tiny", {"text": "y" * (5 * 1024 * 1024)})
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_bad_multitask_strategy(client, untouched):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        create_run(client, "tiny", {"text": "hi"}, multitask_strategy=99)


def test_metadata_over_limit(client, untouched):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as err:
        create_run(client, "tiny", {"text": "hi"}, metadata={"blob": "z" * (17 * 1024)})
    assert "metadata" in err["details"]


@pytest.mark.parametrize("token", ["garbage", "bm90IGpzb24=", "WyJ4IiwgInkiXQ==", "%%%"],
                         ids=["garbage", "b64-not-json", "b64-json-bad-values", "not-b64"])
def test_bad_page_token(client, untouched, token):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as err:
        client.runs.ListRuns(pb.ListRunsRequest(page_token=token), timeout=10)
    assert "page_token" in err["details"]


def test_page_size_over_limit(client, untouched):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT) as err:
        client.runs.ListRuns(pb.ListRunsRequest(page_size=1001), timeout=10)
    assert "1000" in err["details"]
    assert client.runs.ListRuns(pb.ListRunsRequest(page_size=1000), timeout=10) is not None


def test_unknown_status_filter(client, untouched):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        client.runs.ListRuns(pb.ListRunsRequest(statuses=[99]), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        client.runs.ListRuns(pb.ListRunsRequest(statuses=[run_pb2.RUN_STATUS_UNSPECIFIED]), timeout=10)


def test_api_still_serves_after_bad_input(mesh, client, untouched):
    """Runs last in this module (file order): after every rejection above, all is well."""
    with grpc.insecure_channel(mesh.api_address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    run = create_run(client, "tiny", {"text": "still alive"}, thread_id=new_thread("alive"))
    untouched.append("tiny")
    wait_status(client, run.run_id, COMPLETED)
