"""Graph versions side by side: rollout weights stable per thread, pinned versions,
SetRollout validation, RollbackGraph under load. Its own mesh, since it changes rollouts."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.protobuf import json_format

from graphmesh.client import api_client
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    RUNNING,
    create_run,
    get_run,
    new_thread,
    private_mesh,
    rpc_error,
    stream_events,
    wait_status,
)

GRAPH = "research_assistant"
QUICK = {"question": "versions", "delay_seconds": 0.05}


@pytest.fixture(scope="module")
def vmesh():
    with private_mesh("versions", workers=2) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def client(vmesh):
    return api_client(vmesh.api_address)


def _weights(client) -> dict[str, int]:
    graph = client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH)).graph
    return {v.versions.graph_version: v.weight for v in graph.versions}


def _set(client, weights: dict[str, int], reason: str = "test") -> None:
    client.graphs.SetRollout(gpb.SetRolloutRequest(graph=GRAPH, weights=weights, reason=reason),
                             metadata=[("gm-principal", "release-manager")])


def test_both_versions_registered_and_served(client):
    graph = client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH)).graph
    versions = {v.versions.graph_version: v for v in graph.versions}
    assert set(versions) == {"1", "2"}
    assert versions["2"].versions.state_schema_version == "2"
    assert "retrieve" in versions["2"].nodes and "search" in versions["1"].nodes
    assert {v.weight for v in versions.values()} == {100, 0}
    assert all(len(v.workers) == 2 for v in versions.values())


def test_pinned_version_runs_its_own_code(client):
    run = create_run(client, GRAPH, QUICK, graph_version="2")
    events = stream_events(client, run.run_id)
    assert events[-1].status_changed.status == COMPLETED
    nodes = {e.node_started.node for e in events if e.WhichOneof("kind") == "node_started"}
    assert "retrieve" in nodes and "search" not in nodes
    assert get_run(client, run.run_id).versions.prompt_version == "research-v2"
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        create_run(client, GRAPH, QUICK, graph_version="9")


def test_thread_state_is_read_with_the_version_that_wrote_it(client):
    # v1 serves new runs by default; a v2 thread (another state schema) must still come back
    # whole: v2's `documents`, not v1's `results`, and v2 as its writer.
    run = create_run(client, GRAPH, QUICK, graph_version="2")
    assert wait_status(client, run.run_id, COMPLETED).status == COMPLETED
    reply = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10)
    values = json_format.MessageToDict(reply.values)
    assert "documents" in values and "results" not in values
    assert json_format.MessageToDict(reply.checkpoint_metadata)["graph_version"] == "2"


def test_set_rollout_validates(client):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "WEIGHTS_NOT_100"):
        _set(client, {"1": 50, "2": 40})
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_VERSION"):
        _set(client, {"1": 50, "3": 50})
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.graphs.SetRollout(gpb.SetRolloutRequest(graph="nope", weights={"1": 100}, reason="x"))


def test_split_within_tolerance_and_stable_per_thread(client):
    _set(client, {"1": 50, "2": 50})
    assert _weights(client) == {"1": 50, "2": 50}
    threads = [new_thread("split") for _ in range(80)]
    runs = {t: create_run(client, GRAPH, QUICK, thread_id=t) for t in threads}
    chosen = {t: r.versions.graph_version for t, r in runs.items()}
    share = sum(v == "2" for v in chosen.values()) / len(chosen)
    assert 0.3 <= share <= 0.7, f"v2 got {share:.0%} of 80 threads under a 50/50 rollout"
    for run in runs.values():
        wait_status(client, run.run_id, COMPLETED)
    # A thread's next run stays on the thread's version, even after the split changes.
    _set(client, {"1": 0, "2": 100})
    for thread in threads[:10]:
        again = create_run(client, GRAPH, QUICK, thread_id=thread)
        assert again.versions.graph_version == chosen[thread]
        wait_status(client, again.run_id, COMPLETED)


def test_rollback_under_load_keeps_in_flight_runs_on_their_version(vmesh, client):
    _set(client, {"1": 0, "2": 100})
    slow = [create_run(client, GRAPH, {"question": "in flight", "delay_seconds": 2.0}) for _ in range(4)]
    assert {r.versions.graph_version for r in slow} == {"2"}
    graph = client.graphs.RollbackGraph(gpb.RollbackGraphRequest(graph=GRAPH, reason="v2 reports look wrong"),
                                        metadata=[("gm-principal", "oncall")]).graph
    assert {v.versions.graph_version: v.weight for v in graph.versions} == {"1": 100, "2": 0}
    fresh = [create_run(client, GRAPH, QUICK) for _ in range(6)]
    assert {r.versions.graph_version for r in fresh} == {"1"}
    for run in slow:
        done = wait_status(client, run.run_id, COMPLETED)
        assert done.versions.graph_version == "2"
    for run in fresh:
        wait_status(client, run.run_id, COMPLETED)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "NO_EARLIER_VERSION"):
        client.graphs.RollbackGraph(gpb.RollbackGraphRequest(graph=GRAPH, reason="again"))
    # Recorded with who did it and why.
    with psycopg.connect(vmesh.database_url) as conn:
        row = conn.execute("SELECT action, actor, reason, weights FROM gm_rollout_history "
                           "WHERE graph = %s ORDER BY id DESC LIMIT 1", (GRAPH,)).fetchone()
    assert row == ("rollback", "oncall", "v2 reports look wrong", {"1": 100, "2": 0})


def test_get_graph_counts_runs_in_flight(client):
    _set(client, {"1": 100, "2": 0})
    run = create_run(client, GRAPH, {"question": "counting", "delay_seconds": 3.0}, graph_version="2")
    wait_status(client, run.run_id, {RUNNING})
    v2 = next(v for v in client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH)).graph.versions
              if v.versions.graph_version == "2")
    assert v2.runs_running + v2.runs_queued >= 1
    wait_status(client, run.run_id, COMPLETED)


def test_cli_rollout_and_rollback(vmesh):
    import subprocess
    import sys

    def gm(*args):
        return subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                               "--api", vmesh.api_address, *args], capture_output=True, text=True, timeout=60)

    out = gm("graphs", "rollout", GRAPH, "1=80", "2=20", "--reason", "canary", "--as", "rm", "--json")
    assert out.returncode == 0, out.stderr
    assert '"weight": 20' in out.stdout
    bad = gm("graphs", "rollout", GRAPH, "1=80", "--reason", "x")
    assert bad.returncode == 1 and "WEIGHTS_NOT_100" in bad.stderr
    back = gm("graphs", "rollback", GRAPH, "--reason", "canary failed")
    assert back.returncode == 0, back.stderr
    assert "weight 100%" in back.stdout and "queued" in back.stdout


def test_thread_moves_up_by_migration_and_is_never_moved_back(client):
    """A v2 run on a v1 thread migrates it (the manifest declares 1 -> 2); a later v1 run on
    that thread is refused with a clear code, since nothing declares 2 -> 1."""
    thread = new_thread("compat")
    first = create_run(client, GRAPH, QUICK, thread_id=thread, graph_version="1")
    wait_status(client, first.run_id, COMPLETED)
    second = create_run(client, GRAPH, QUICK, thread_id=thread, graph_version="2")
    upgraded = wait_status(client, second.run_id, COMPLETED)
    migration, = upgraded.migrations
    assert (migration.from_versions.state_schema_version, migration.to_versions.state_schema_version) == ("1", "2")
    third = create_run(client, GRAPH, QUICK, thread_id=thread, graph_version="1")
    failed = wait_status(client, third.run_id, {FAILED})
    assert failed.error.code == "INCOMPATIBLE_CHECKPOINT"
    for fragment in ("research_assistant@2", "state schema 2", "research_assistant@1", "state schema 1",
                     "no migration path"):
        assert fragment in failed.error.message
    assert "Traceback" not in failed.error.message
    # The same version continues the thread.
    fourth = create_run(client, GRAPH, QUICK, thread_id=thread, graph_version="2")
    wait_status(client, fourth.run_id, COMPLETED)
