"""`durability` per graph: LangGraph's modes applied by the workers. With "exit" a run
writes its checkpoint when it stops, not after every step, and ends with the same state."""

from __future__ import annotations

import psycopg
import pytest

from graphmesh.client import api_client
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import create_run, new_thread, private_mesh, to_dict, wait_status


@pytest.fixture(scope="module")
def dmesh():
    with private_mesh("durability", workers=1, manifest=REPO_ROOT / "tests" / "fixtures" / "durability.yaml") as m:
        yield m


def _checkpoints(mesh, thread_id: str) -> int:
    with psycopg.connect(mesh.database_url) as conn:
        return conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()[0]


def test_exit_durability_checkpoints_once_with_the_same_result(dmesh):
    client = api_client(dmesh.api_address)
    try:
        finals, counts = {}, {}
        for graph in ("tiny_async", "tiny_exit"):
            thread = new_thread(graph)
            run = create_run(client, graph, {"text": "Durable runs, durable state"}, thread_id=thread)
            assert wait_status(client, run.run_id, run_pb2.RUN_STATUS_COMPLETED).status == run_pb2.RUN_STATUS_COMPLETED
            finals[graph] = to_dict(client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread),
                                                               timeout=10).values)
            counts[graph] = _checkpoints(dmesh, thread)
    finally:
        client.close()
    assert finals["tiny_exit"] == finals["tiny_async"]
    assert counts["tiny_exit"] >= 1 and counts["tiny_exit"] < counts["tiny_async"], counts
