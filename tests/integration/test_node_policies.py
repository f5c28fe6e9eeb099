"""Node policies enforced by the worker, whatever the graph's code does: a mutating node
declared requires_approval runs only with an approval naming it, and a node with an
owner_role only for owners holding that role. A refused node FAILS its run with
POLICY_VIOLATION, its side effect never happens, and an audit record says why.

A private mesh with token authentication (sam: submitter; dee: submitter + deployer;
ada: admin), manifest tests/fixtures/security.yaml.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import (
    COMPLETED,
    FAILED,
    WAITING,
    create_run,
    decide,
    new_thread,
    private_mesh,
    stream_events,
    thread_values,
    wait_approvals,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "security.yaml"


@pytest.fixture(scope="module")
def pmesh():
    with private_mesh("policies", manifest=MANIFEST, workers=1, auth="token") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def callers(pmesh):
    made = {}
    for name, roles in {"sam": ["submitter"], "dee": ["submitter", "deployer"], "ada": ["admin"]}.items():
        _, token = pmesh.create_token(name, roles)
        made[name] = (api_client(pmesh.api_address, token=token), review_stub(pmesh.review_address, token))
    yield made
    for client, _ in made.values():
        client.close()


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / f"effect-{uuid.uuid4()}"


def _audit(mesh, run_id: str) -> list[dict]:
    with psycopg.connect(mesh.database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT actor, action, approval_id, details FROM gm_audit WHERE run_id = %s "
                            "ORDER BY record_id", (run_id,)).fetchall()


def _refused(mesh, client, run, node: str, policy: str) -> None:
    """The run FAILED with POLICY_VIOLATION naming the node and policy, audited."""
    final = wait_status(client, run.run_id, {FAILED, COMPLETED})
    assert final.status == FAILED, final
    assert final.error.code == "POLICY_VIOLATION"
    assert final.error.node == node
    assert f"node '{node}'" in final.error.message and policy in final.error.message
    # Recorded with the FAILED transition: present the moment the run is seen FAILED.
    audit = [a for a in _audit(mesh, run.run_id) if a["action"] == "policy_violation"]
    assert len(audit) == 1, audit
    assert audit[0]["actor"] == "system:worker" and audit[0]["approval_id"] is None
    details = audit[0]["details"]
    assert {k: details[k] for k in ("node", "policy", "graph", "graph_version")} == {
        "node": node, "policy": policy, "graph": run.graph, "graph_version": "1"}
    terminal = stream_events(client, run.run_id)[-1].status_changed
    assert terminal.error.code == "POLICY_VIOLATION"


def test_a_mutating_node_without_an_approval_is_refused(pmesh, callers, marker):
    client, _ = callers["sam"]
    run = create_run(client, "unguarded_change", {"marker": str(marker)}, thread_id=new_thread("pol"))
    _refused(pmesh, client, run, "apply", "requires_approval")
    assert "no approved or edited approval" in wait_status(client, run.run_id, FAILED).error.message
    assert not marker.exists(), "the refused node's side effect happened"
    values = thread_values(client, run.thread_id)
    assert values.get("change") and not values.get("applied")  # prepare ran, apply did not


def test_a_mutating_node_runs_once_its_approval_is_recorded(pmesh, callers, marker):
    client, _ = callers["sam"]
    _, review = callers["ada"]
    run = create_run(client, "guarded_change", {"marker": str(marker)}, thread_id=new_thread("pol"))
    wait_status(client, run.run_id, WAITING)
    assert not marker.exists()
    (approval,) = wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_PENDING)
    assert approval.node == "review"  # the approval step; its payload names apply
    decide(review, approval.approval_id, "approve", reviewer="ada")
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert final.status == COMPLETED, final.error
    assert marker.read_text() == "applied"
    assert not [a for a in _audit(pmesh, run.run_id) if a["action"] == "policy_violation"]


def test_a_rejected_change_ends_without_the_node(pmesh, callers, marker):
    client, _ = callers["sam"]
    _, review = callers["ada"]
    run = create_run(client, "guarded_change", {"marker": str(marker)}, thread_id=new_thread("pol"))
    (approval,) = wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_PENDING)
    decide(review, approval.approval_id, "reject", reviewer="ada")
    assert wait_status(client, run.run_id, {COMPLETED, FAILED}).status == COMPLETED
    assert not marker.exists()


def test_an_owner_without_the_role_cannot_run_the_node(pmesh, callers, marker):
    client, _ = callers["sam"]  # submitter only
    run = create_run(client, "owner_gated", {"marker": str(marker)}, thread_id=new_thread("pol"))
    _refused(pmesh, client, run, "deploy", "owner_role")
    final = wait_status(client, run.run_id, FAILED)
    assert "'deployer'" in final.error.message and "sam" in final.error.message
    assert not marker.exists()


def test_an_owner_with_the_role_runs_the_node(pmesh, callers, marker):
    client, _ = callers["dee"]  # submitter + deployer
    run = create_run(client, "owner_gated", {"marker": str(marker)}, thread_id=new_thread("pol"))
    final = wait_status(client, run.run_id, {COMPLETED, FAILED})
    assert final.status == COMPLETED, final.error
    assert marker.read_text() == "deployed"
