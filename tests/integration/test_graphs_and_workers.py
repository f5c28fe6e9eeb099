"""GraphService reads and WorkerService.Drain against the shared mesh."""

from __future__ import annotations

import grpc
import pytest

from graphmesh.client import api_client, worker_stub
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import COMPLETED, create_run, rpc_error, stream_events, wait_for


@pytest.fixture(scope="module")
def client(mesh):
    return api_client(mesh.api_address)


def test_list_and_get_graphs(client):
    graphs = {g.name: g for g in client.graphs.ListGraphs(gpb.ListGraphsRequest()).graphs}
    assert {"tiny", "research_assistant", "approval_workflow"} <= set(graphs)

    tiny = client.graphs.GetGraph(gpb.GetGraphRequest(graph="tiny")).graph
    (version,) = tiny.versions
    assert version.versions.graph_version == "1"
    assert version.versions.state_schema_version == "1"
    assert version.sync_eligible and version.weight == 100
    assert list(version.nodes) == ["normalize", "count", "summarize"]
    research = graphs["research_assistant"].versions[0]
    assert not research.sync_eligible and "write_report" in research.nodes

    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND"):
        client.graphs.GetGraph(gpb.GetGraphRequest(graph="no-such-graph"))


def test_drained_worker_takes_no_new_runs(mesh, client):
    drained, other = mesh.worker_addresses[0], mesh.worker_addresses[1]
    try:
        status = worker_stub(drained).Drain(wpb.DrainRequest(grace_seconds=5)).status
        assert status.draining
        wait_for(lambda: not worker_stub(drained).GetWorkerStatus(wpb.GetWorkerStatusRequest()).active_runs,
                 30, message="the drained worker to finish its runs")
        before = worker_stub(drained).GetWorkerStatus(wpb.GetWorkerStatusRequest()).runs_completed
        other_before = worker_stub(other).GetWorkerStatus(wpb.GetWorkerStatusRequest()).runs_completed

        runs = [create_run(client, "tiny", {"text": f"drain {i}"}) for i in range(6)]
        for run in runs:
            assert stream_events(client, run.run_id)[-1].status_changed.status == COMPLETED

        after = worker_stub(drained).GetWorkerStatus(wpb.GetWorkerStatusRequest())
        assert after.draining and after.runs_completed == before
        other_after = worker_stub(other).GetWorkerStatus(wpb.GetWorkerStatusRequest()).runs_completed
        assert other_after - other_before == len(runs)
    finally:
        mesh.restart_service("worker-1")
    assert not worker_stub(drained).GetWorkerStatus(wpb.GetWorkerStatusRequest()).draining
