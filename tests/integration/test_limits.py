"""Admission limits: queue depth and runs in progress per graph and per owner answer
RESOURCE_EXHAUSTED naming the limit; nothing is recorded for a refused run."""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
import pytest

from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb
from helpers import as_reviewer, private_mesh, rpc_error, struct

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "limits.yaml"


@pytest.fixture(scope="module")
def lmesh():
    with private_mesh("limits", manifest=MANIFEST, workers=0) as mesh:  # no workers: runs stay queued
        yield mesh


def _create(client, graph: str, who: str, key: str = ""):
    """CreateRun as `who` (development auth: the caller names itself)."""
    request = pb.CreateRunRequest(graph=graph, input=struct({"text": "limit"}), idempotency_key=key)
    return client.runs.CreateRun(request, metadata=as_reviewer(who), timeout=30).run


def _runs_of(mesh, graph: str) -> int:
    with psycopg.connect(mesh.database_url) as conn:
        return conn.execute("SELECT count(*) FROM gm_runs WHERE graph = %s", (graph,)).fetchone()[0]


def test_queue_depth_backpressure(lmesh):
    client = api_client(lmesh.api_address)
    first = _create(client, "tiny_queue", "ann", key="retry-me")
    _create(client, "tiny_queue", "ann")
    with rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "MAX_QUEUED_RUNS") as err:
        _create(client, "tiny_queue", "ann")
    assert "max_queued_runs=2" in err["details"]
    assert _runs_of(lmesh, "tiny_queue") == 2
    # A client retrying its CreateRun (same idempotency key) gets its run back, not a refusal.
    assert _create(client, "tiny_queue", "ann", key="retry-me").run_id == first.run_id


def test_runs_in_progress_per_owner(lmesh):
    client = api_client(lmesh.api_address)
    _create(client, "tiny_per_owner", "alice")
    with rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "MAX_CONCURRENT_RUNS_PER_OWNER") as err:
        _create(client, "tiny_per_owner", "alice")
    assert "alice" in err["details"] and "max_concurrent_runs_per_owner=1" in err["details"]
    _create(client, "tiny_per_owner", "bob")  # another owner is not held back


def test_runs_in_progress_per_graph(lmesh):
    client = api_client(lmesh.api_address)
    _create(client, "tiny_graph_cap", "carol")
    _create(client, "tiny_graph_cap", "dave")
    with rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "MAX_CONCURRENT_RUNS"):
        _create(client, "tiny_graph_cap", "erin")
    assert _runs_of(lmesh, "tiny_graph_cap") == 2
