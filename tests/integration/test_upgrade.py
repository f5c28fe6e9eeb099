"""A rolling upgrade from research_assistant v1 to v2: a v1-only worker is kept alive and
finishes the v1 runs while v2 workers take the new ones; once the v1 worker is gone, a v1
run waiting for approval is taken over by a v2 worker, its checkpoint migrated, and the
reviewer's decision carried over. `graphmesh compat check` judges the same threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    WAITING,
    create_run,
    decide,
    get_run,
    private_mesh,
    stream_events,
    thread_values,
    wait_approvals,
    wait_for,
    wait_status,
)

REPO = Path(__file__).resolve().parents[2]
GRAPH = "research_assistant"


def _manifest(directory: Path, name: str, versions: set[str], *, migration: bool = True) -> Path:
    """The repository manifest's research_assistant entries for `versions` only."""
    entries = [e for e in yaml.safe_load((REPO / "graphmesh" / "examples.yaml").read_text())["graphs"]
               if e["name"] == GRAPH and str(e["version"]) in versions]
    for e in entries:
        e["weight"] = 100 if e["version"] == max(versions) else 0
        if not migration:
            e.pop("migrations", None)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"graphs": entries}))
    return path


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    d = tmp_path_factory.mktemp("upgrade-manifests")
    return {"both": _manifest(d, "both", {"1", "2"}), "v1": _manifest(d, "v1", {"1"}),
            "v2": _manifest(d, "v2", {"2"}), "v2_bare": _manifest(d, "v2_bare", {"2"}, migration=False)}


@pytest.fixture(scope="module")
def umesh(manifests):
    # The api knows both versions (v2 takes new runs); worker-1 still runs v1 code only.
    with private_mesh("upgrade", workers=3, manifest=manifests["both"],
                      worker_manifests={"worker-1": manifests["v1"], "worker-2": manifests["v2"],
                                        "worker-3": manifests["v2"]}) as mesh:
        yield mesh


def _nodes(client, run_id: str) -> set[str]:
    return {e.node_started.node for e in stream_events(client, run_id) if e.WhichOneof("kind") == "node_started"}


def _compat(mesh, manifest: Path) -> tuple[int, dict]:
    out = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                          "--json", "compat", "check", "--database-url", mesh.database_url, "--config", str(manifest)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode in (0, 1), out.stderr + out.stdout
    return out.returncode, {t["run_id"]: t for t in json.loads(out.stdout)["threads"]}


def test_v1_worker_finishes_v1_runs_while_v2_workers_take_new_ones(umesh):
    client = api_client(umesh.api_address)
    graph = client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH)).graph
    served = {v.versions.graph_version: {w for w in v.workers} for v in graph.versions}
    assert served == {"1": {"worker-1"}, "2": {"worker-2", "worker-3"}}

    old = [create_run(client, GRAPH, {"question": f"old {i}", "delay_seconds": 0.3}, graph_version="1")
           for i in range(4)]
    new = [create_run(client, GRAPH, {"question": f"new {i}", "delay_seconds": 0.3}) for i in range(6)]
    assert {r.versions.graph_version for r in new} == {"2"}
    for run in old:
        done = wait_status(client, run.run_id, COMPLETED)
        assert done.versions.graph_version == "1" and not done.migrations
        assert "search" in _nodes(client, run.run_id)  # v1 code: only worker-1 has it
    for run in new:
        done = wait_status(client, run.run_id, COMPLETED)
        assert done.versions.graph_version == "2" and not done.migrations
        assert "retrieve" in _nodes(client, run.run_id)


def test_v1_run_waiting_for_approval_is_migrated_once_the_v1_worker_is_gone(umesh, manifests):
    client, review = api_client(umesh.api_address), review_stub(umesh.review_address)
    run = create_run(client, GRAPH, {"question": "langgraph grpc", "delay_seconds": 0.05, "review": True},
                     graph_version="1")
    wait_status(client, run.run_id, WAITING)
    approval, = wait_approvals(review, run.run_id, 1)
    assert approval.node == "write_report"

    # Judged before the upgrade: the v1 deployment continues it, v2 migrates it, v2
    # without the migration refuses it (and compat check says so with its exit code).
    code, threads = _compat(umesh, manifests["both"])
    assert threads[run.run_id]["action"] == "continue"
    code, threads = _compat(umesh, manifests["v2"])
    assert (code, threads[run.run_id]["action"], threads[run.run_id]["runs_as"]) == (0, "migrate", "2")
    assert "node search -> retrieve" in threads[run.run_id]["detail"]
    code, threads = _compat(umesh, manifests["v2_bare"])
    assert (code, threads[run.run_id]["action"]) == (1, "refuse")

    umesh.stop_service("worker-1")  # the last v1 worker drains away and leaves the roster
    wait_for(lambda: all(w.worker_id != "worker-1" for w in
                         client.graphs.ListWorkers(gpb.ListWorkersRequest()).workers), 30)
    decided = decide(review, approval.approval_id, "approve", reviewer="rita")
    assert decided.status == rpb.APPROVAL_STATUS_APPROVED

    done = wait_status(client, run.run_id, COMPLETED)
    assert done.versions.graph_version == "2" and done.versions.state_schema_version == "2"
    migration, = done.migrations
    assert migration.from_versions.graph_version == "1" and migration.to_versions.graph_version == "2"
    assert set(migration.steps) == {"field results -> documents", "node search -> retrieve"}
    assert len(wait_approvals(review, run.run_id, 1)) == 1  # the decision was carried, not asked again
    events = stream_events(client, run.run_id)
    assert any(e.WhichOneof("kind") == "checkpoint_migrated" for e in events)
    values = thread_values(client, run.thread_id)
    assert values["reviewed_by"] == "rita" and values["report"].startswith("# langgraph grpc")
    assert "documents" in values and "results" not in values
    assert get_run(client, run.run_id).migrations[0].to_checkpoint_id == migration.to_checkpoint_id
