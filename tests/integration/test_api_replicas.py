"""`up --api-replicas N`: several api processes behind one address (SO_REUSEPORT), each
taking a share of new connections; one replica stopping leaves the address serving, and a
delayed run it created still starts (another replica's reconciler publishes it)."""

from __future__ import annotations

import urllib.request

from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from graphmesh.client import api_client
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import private_mesh, wait_for

CLIENTS = 24  # each its own channel, so its own connection for the kernel to place


def _created(url: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "graphmesh_runs_created_total")


def _create_through_fresh_connections(mesh, count: int) -> list[str]:
    run_ids = []
    for i in range(count):
        client = api_client(mesh.api_address, token="")
        try:
            graph_input = struct_pb2.Struct()
            graph_input.update({"text": f"replica test {i}"})
            run_ids.append(client.runs.CreateRun(pb.CreateRunRequest(graph="tiny", input=graph_input),
                                                 timeout=10).run.run_id)
        finally:
            client.close()
    return run_ids


def test_replicas_share_one_address_and_survive_each_other():
    with private_mesh("api-replicas", workers=1, api_replicas=3) as mesh:
        names = mesh.api_replica_names
        assert names == ["api", "api-2", "api-3"]
        own = {mesh.address(n) for n in names}
        assert len(own) == 3 and mesh.api_address not in own  # each its own port, plus the shared one

        run_ids = _create_through_fresh_connections(mesh, CLIENTS)
        served = {n: _created(mesh.metrics_url(n)) for n in names}
        assert sum(served.values()) == CLIENTS
        assert sum(1 for v in served.values() if v) >= 2, f"one replica took every connection: {served}"

        client = api_client(mesh.api_address, token="")
        try:
            for run_id in run_ids:
                wait_for(lambda: client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run.status
                         == run_pb2.RUN_STATUS_COMPLETED, 60, message=f"run {run_id} to complete")
        finally:
            client.close()

        # A delayed run created on the replica about to stop: that replica would publish its job
        # when due; once it is gone, another replica's reconciler does.
        direct = api_client(mesh.address("api"), token="")
        try:
            graph_input = struct_pb2.Struct()
            graph_input.update({"text": "after the deploy"})
            delayed = direct.runs.CreateRun(pb.CreateRunRequest(
                graph="tiny", input=graph_input, options=run_pb2.RunOptions(after_seconds=3)), timeout=10).run
        finally:
            direct.close()

        # A replica stops (a deploy rolls it): new connections go to the others.
        mesh.stop_service("api")
        later = _create_through_fresh_connections(mesh, 6)
        assert len(later) == 6
        assert sum(_created(mesh.metrics_url(n)) for n in ("api-2", "api-3")) == sum(
            served[n] for n in ("api-2", "api-3")) + 6

        client = api_client(mesh.api_address, token="")
        try:
            wait_for(lambda: client.runs.GetRun(pb.GetRunRequest(run_id=delayed.run_id), timeout=10).run.status
                     == run_pb2.RUN_STATUS_COMPLETED, 60, message="the delayed run to complete")
            done = client.runs.GetRun(pb.GetRunRequest(run_id=delayed.run_id), timeout=10).run
            assert done.started_at.ToDatetime() >= done.run_after.ToDatetime()
        finally:
            client.close()
