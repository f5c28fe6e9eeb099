"""A LangGraph project as LangGraph's docs lay one out runs on graphmesh unchanged.

The project (tests/fixtures/langgraph_project: `my_agent/` package, compiled graphs,
langgraph.json with `dependencies: ["."]` and `env: .env`) is started the way its team
would: `graphmesh up --config langgraph.json` from its own directory, nothing else set.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphmesh.client import api_client, review_stub
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    RUN_TIMEOUT,
    new_thread,
    private_mesh,
    status_name,
    stream_events,
    struct,
    to_dict,
    wait_for,
    wait_status,
)

FIXTURES = REPO_ROOT / "tests" / "fixtures"
PROJECT = FIXTURES / "langgraph_project"
BROKEN = FIXTURES / "broken_project"
GRAPHMESH = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
API_KEY = "wk-live-4f9c2e71d0b8a3"  # what the project's .env holds

WAITING = run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL
COMPLETED = run_pb2.RUN_STATUS_COMPLETED
PAUSED = run_pb2.RUN_STATUS_PAUSED


def _clean_env(work: Path) -> dict[str, str]:
    """The environment of a user who set nothing: no graphmesh settings, no project values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHMESH_", "WEATHER_"))}
    env["XDG_CONFIG_HOME"] = str(work / "config")  # the CLI config `up` writes stays in the test
    return env


@dataclass
class UpMesh:
    api: str
    review: str
    token: str
    output: list[str]


def _reader(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _until_up(proc: subprocess.Popen, lines: queue.Queue, timeout: float = 120) -> list[str]:
    seen = []
    while True:
        line = lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"graphmesh up exited {proc.wait()} before it was up:\n" + "\n".join(seen))
        seen.append(line)
        if line.startswith("press Ctrl-C"):
            return seen


@pytest.fixture(scope="module")
def up():
    work = Path(tempfile.mkdtemp(prefix="graphmesh-lgproject-"))
    project = work / "project"
    shutil.copytree(PROJECT, project)
    proc = subprocess.Popen(
        [*GRAPHMESH, "up", "--config", str(project / "langgraph.json"), "--data-dir", str(work / "data"),
         "--api-port", "0", "--review-port", "0", "--review-web-port", "0", "--worker-base-port", "0", "--workers", "1"],
        cwd=project, env=_clean_env(work), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        output = _until_up(proc, _reader(proc))
        addresses = dict(re.findall(r"^\s+(api|review)\s+(\S+:\d+)", "\n".join(output), re.MULTILINE))
        token = (work / "data" / "admin-token").read_text().strip()
        yield UpMesh(addresses["api"], addresses["review"], token, output)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def client(up):
    c = api_client(up.api, up.token)
    yield c
    c.close()


@pytest.fixture(scope="module")
def review(up):
    return review_stub(up.review, up.token)


# -- helpers ----------------------------------------------------------------------------------


def start(client, graph: str, inputs: dict, **fields) -> run_pb2.Run:
    return client.runs.CreateRun(pb.CreateRunRequest(graph=graph, thread_id=new_thread(graph), input=struct(inputs),
                                                     **fields), timeout=30).run


def approval_of(review, run_id: str) -> rpb.Approval:
    def pending():
        found = review.ListApprovals(rpb.ListApprovalsRequest(run_id=run_id), timeout=10).approvals
        return found[0] if found else None
    return wait_for(pending, RUN_TIMEOUT, message=f"the approval of run {run_id}")


def decide(review, approval_id: str, kind: str, *, comment: str = "", edited: dict | None = None) -> rpb.Approval:
    request = rpb.DecideRequest(approval_id=approval_id, comment=comment,
                                kind=rpb.DecisionKind.Value(f"DECISION_KIND_{kind.upper()}"))
    if edited is not None:
        request.edited_value.CopyFrom(struct(edited))
    return review.Decide(request, timeout=30).approval


def decided_run(client, review, graph: str, inputs: dict, kind: str, **decision) -> tuple[run_pb2.Run, dict]:
    """Runs `graph` to its approval, decides it, and returns the finished run and its state."""
    run = start(client, graph, inputs)
    wait_status(client, run.run_id, WAITING)
    decide(review, approval_of(review, run.run_id).approval_id, kind, **decision)
    final = wait_status(client, run.run_id, {COMPLETED, run_pb2.RUN_STATUS_FAILED})
    assert final.status == COMPLETED, f"{graph} {kind}: {status_name(final.status)} {final.error}"
    return final, thread_state(client, run.thread_id)


def thread_state(client, thread_id: str) -> dict:
    return to_dict(client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10).values)


def nodes_started(client, run_id: str) -> list[str]:
    return [e.node_started.node for e in stream_events(client, run_id) if e.WhichOneof("kind") == "node_started"]


# -- loading ----------------------------------------------------------------------------------


def test_up_loads_the_project_and_reports_what_it_does_not_use(up, client):
    text = "\n".join(up.output)
    assert "graphmesh is up" in text
    assert "'python_version' is not used by graphmesh" in text  # said, not silently dropped
    listed = {g.name for g in client.graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=10).graphs}
    assert listed == {"weather", "inbox", "hitl", "tenant_agent"}


def test_the_tool_sees_the_env_values_and_the_key_never_reaches_state_or_events(client, review):
    run, state = decided_run(client, review, "weather", {"city": "paris"}, "approve")
    assert state["branch"] == "sent"
    assert state["forecast"] == "sunny in Paris (metric)"  # WEATHER_UNITS from .env
    # The tool returned its key; as a value from .env it is a secret: redacted before storage.
    assert state["authorization"] == "Bearer ***"
    events = json.dumps([to_dict(e) for e in stream_events(client, run.run_id)])
    assert API_KEY not in events and API_KEY not in json.dumps(state)


def test_a_graph_exported_compiled_with_its_own_checkpointer_checkpoints_to_postgres(client, review):
    # inbox.py compiles with InMemorySaver: the state must still be in graphmesh's Postgres,
    # readable by the api process, which never ran the graph.
    run, state = decided_run(client, review, "inbox", {"to": "ada@example.com"}, "approve")
    assert state["branch"] == "accept" and state["sent_to"] == "ada@example.com"
    reply = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10)
    assert reply.checkpoint_id and to_dict(reply.checkpoint_metadata)["gm_run_id"] == run.run_id


def test_a_factory_is_called_with_each_runs_config(client):
    answers = {}
    for tenant in ("acme", "globex"):
        run = start(client, "tenant_agent", {"question": "hi"}, metadata={"tenant": tenant})
        assert wait_status(client, run.run_id, {COMPLETED, run_pb2.RUN_STATUS_FAILED}).status == COMPLETED
        answers[tenant] = thread_state(client, run.thread_id)["answer"]
    assert answers == {"acme": "[acme] hi", "globex": "[globex] hi"}


# -- decisions reach each payload shape as the graph expects ----------------------------------------


def test_plain_interrupt_approve_and_reject_take_their_branches(client, review):
    approved, state = decided_run(client, review, "weather", {"city": "Oslo"}, "approve")
    assert state["branch"] == "sent" and "call_tool" in nodes_started(client, approved.run_id)
    rejected, state = decided_run(client, review, "weather", {"city": "Oslo"}, "reject", comment="not now")
    assert state["branch"] == "ended" and "forecast" not in state
    assert "call_tool" not in nodes_started(client, rejected.run_id)  # the guarded action never ran


def test_plain_interrupt_edit_resumes_with_the_edited_value(client, review):
    # An edited value is truthy in the docs' pattern: it counts as an approval.
    _, state = decided_run(client, review, "weather", {"city": "Rome"}, "edit", edited={"city": "Milan"})
    assert state["branch"] == "sent"


def test_human_interrupt_decisions_become_human_responses(client, review):
    _, accepted = decided_run(client, review, "inbox", {"to": "bo@example.com"}, "approve")
    _, ignored = decided_run(client, review, "inbox", {"to": "bo@example.com"}, "reject")
    _, answered = decided_run(client, review, "inbox", {"to": "bo@example.com"}, "reject", comment="too curt")
    _, edited = decided_run(client, review, "inbox", {"to": "bo@example.com"}, "edit",
                            edited={"action": "send_email", "args": {"to": "cy@example.com", "body": "Hi"}})
    assert (accepted["branch"], accepted["sent_to"]) == ("accept", "bo@example.com")
    assert ignored["branch"] == "ignore" and "sent_to" not in ignored
    assert (answered["branch"], answered["feedback"]) == ("response", "too curt")
    assert (edited["branch"], edited["sent_to"]) == ("edit", "cy@example.com")


def test_hitl_request_decisions_become_hitl_decisions(client, review):
    _, approved = decided_run(client, review, "hitl", {"path": "/tmp/a"}, "approve")
    _, rejected = decided_run(client, review, "hitl", {"path": "/tmp/a"}, "reject", comment="keep it")
    _, edited = decided_run(client, review, "hitl", {"path": "/tmp/a"}, "edit",
                            edited={"name": "delete_file", "args": {"path": "/tmp/b"}})
    assert (approved["branch"], approved["deleted"]) == ("approve", "/tmp/a")
    assert rejected["branch"] == "reject" and "deleted" not in rejected and "keep it" in rejected["message"]
    assert (edited["branch"], edited["deleted"]) == ("edit", "/tmp/b")


def test_the_approval_tells_review_tools_its_payload_shape(client, review):
    shapes = {}
    for graph, inputs in (("weather", {"city": "Lima"}), ("inbox", {"to": "x@example.com"}),
                          ("hitl", {"path": "/tmp/c"})):
        run = start(client, graph, inputs)
        wait_status(client, run.run_id, WAITING)
        approval = approval_of(review, run.run_id)
        shapes[graph] = approval.resume_shape
        decide(review, approval.approval_id, "reject")
    assert shapes == {"weather": "plain", "inbox": "human_interrupt", "hitl": "hitl"}


# -- operator actions and traces on a compiled graph ------------------------------------------------


def test_disable_node_pauses_a_compiled_graph_before_the_node_and_resume_continues_it(client, review):
    client.graphs.DisableNode(gpb.DisableNodeRequest(graph="weather", node="call_tool", reason="vendor outage"),
                              timeout=10)
    try:
        run = start(client, "weather", {"city": "Bern"})
        wait_status(client, run.run_id, WAITING)
        decide(review, approval_of(review, run.run_id).approval_id, "approve")
        paused = wait_status(client, run.run_id, PAUSED)
        assert paused.error.code == "NODE_DISABLED" and paused.error.node == "call_tool"
        assert "forecast" not in thread_state(client, run.thread_id)  # stopped before the node ran
    finally:
        client.graphs.EnableNode(gpb.EnableNodeRequest(graph="weather", node="call_tool"), timeout=10)
    client.runs.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id), timeout=30)
    assert wait_status(client, run.run_id, COMPLETED).status == COMPLETED
    assert thread_state(client, run.thread_id)["forecast"] == "sunny in Bern (metric)"


def test_a_compiled_graphs_trace_has_a_span_per_node(client, review):
    run, _ = decided_run(client, review, "weather", {"city": "Kyiv"}, "approve")

    def node_spans():
        spans = client.runs.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id), timeout=10).spans
        names = {s.name for s in spans if s.name.startswith("node ")}
        return names if {"node plan", "node human_approval", "node call_tool"} <= names else None

    wait_for(node_spans, RUN_TIMEOUT, message="node spans of the weather run")


# -- expiry, under the project's graphmesh.yaml (approval time limits) -------------------------------


def test_an_expired_approval_takes_the_reject_branch_for_every_shape():
    with private_mesh("lgproject-expiry", manifest=PROJECT / "graphmesh.yaml", workers=1) as mesh:
        c = api_client(mesh.api_address)
        try:
            runs = {graph: start(c, graph, inputs) for graph, inputs in
                    (("weather", {"city": "Quito"}), ("inbox", {"to": "z@example.com"}), ("hitl", {"path": "/x"}))}
            finals = {g: wait_status(c, r.run_id, {COMPLETED, run_pb2.RUN_STATUS_FAILED}) for g, r in runs.items()}
            assert {g: status_name(f.status) for g, f in finals.items()} == dict.fromkeys(runs, "RUN_STATUS_COMPLETED")
            branches = {g: thread_state(c, r.thread_id)["branch"] for g, r in runs.items()}
        finally:
            c.close()
    assert branches == {"weather": "ended", "inbox": "ignore", "hitl": "reject"}


# -- a graph that does not load stops `up` -----------------------------------------------------------


def test_up_refuses_to_start_and_names_the_graph_that_does_not_load(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(BROKEN, project)
    done = subprocess.run(
        [*GRAPHMESH, "up", "--config", "langgraph.json", "--data-dir", str(tmp_path / "data"), "--api-port", "0",
         "--review-port", "0", "--review-web-port", "0", "--worker-base-port", "0", "--workers", "1"],
        cwd=project, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "broken_agent" in done.stdout and "langchain_nonexistent_provider" in done.stdout
    assert "graphmesh is up" not in done.stdout
    assert not (tmp_path / "data" / "postgres").exists()  # refused before anything started


def test_graphs_check_names_the_broken_graph_and_passes_the_good_one(tmp_path):
    done = subprocess.run([*GRAPHMESH, "graphs", "check", "--config", str(BROKEN / "langgraph.json")],
                          env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "ok      fine@1" in done.stdout
    assert "error:  graph 'broken_agent' version '1'" in done.stdout
    ok = subprocess.run([*GRAPHMESH, "graphs", "check", "--config", str(PROJECT / "langgraph.json")],
                        env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok      tenant_agent@1" in ok.stdout


def test_a_missing_package_dependency_is_named_with_what_to_install(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    config = json.loads((project / "langgraph.json").read_text())
    config["dependencies"] = [".", "langchain-nonexistent-provider>=0.3"]
    (project / "langgraph.json").write_text(json.dumps(config))
    done = subprocess.run([*GRAPHMESH, "graphs", "check", "--config", str(project / "langgraph.json")],
                          env=_clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'langchain-nonexistent-provider>=0.3'" in done.stdout
