"""`graphmesh runs cancel|retry|resume`, `graphmesh graphs ...` and `graphmesh workers ...`
(issue 4, item 11) as an operator would use them, against the shared session mesh.

Every test leaves the mesh as it found it: disabled nodes are enabled again and a drained
worker is restarted, since other test modules share the mesh.
"""

from __future__ import annotations

import json
import subprocess

from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import run_pb2
from helpers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    TERMINAL,
    WAITING,
    create_run,
    new_thread,
    thread_values,
    wait_for,
    wait_status,
)

PAUSED = run_pb2.RUN_STATUS_PAUSED
RESEARCH = "research_assistant"
EXAMPLES = ("tiny", "research_assistant", "approval_workflow")


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _fails(result: subprocess.CompletedProcess, *texts: str) -> subprocess.CompletedProcess:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    for text in texts:
        assert text in result.stderr, f"{text!r} not in stderr:\n{result.stderr}"
    return result


def _json(result: subprocess.CompletedProcess):
    return json.loads(_ok(result).stdout)


def _enable_if_disabled(client, graph: str, node: str) -> None:
    disabled = client.graphs.GetGraph(gpb.GetGraphRequest(graph=graph), timeout=10).graph.disabled_nodes
    if any(d.node == node for d in disabled):
        client.graphs.EnableNode(gpb.EnableNodeRequest(graph=graph, node=node), timeout=10)


def test_graphs_list_and_show(gm):
    listed = _json(gm("graphs", "list", "--json"))
    by_name = {g["name"]: g for g in listed["graphs"]}
    assert set(EXAMPLES) <= set(by_name)
    tiny = by_name["tiny"]
    assert tiny["versions"][0]["versions"]["graph_version"] == "1"
    assert tiny["versions"][0]["sync_eligible"] is True
    assert tiny["versions"][0]["nodes"] == ["normalize", "count", "summarize"]

    table = _ok(gm("graphs", "list")).stdout.splitlines()
    assert table[0].split()[:4] == ["GRAPH", "VERSIONS", "SYNC", "NODES"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(EXAMPLES) <= set(rows)
    assert "1 (100%)" in rows["tiny"] and " yes " in rows["tiny"] and " 3 " in rows["tiny"]
    assert " no " in rows[RESEARCH]

    shown = _json(gm("graphs", "show", RESEARCH, "--json"))
    assert shown["name"] == RESEARCH and shown["description"]
    version, v2 = shown["versions"]
    assert version["versions"]["prompt_version"] == "research-v1" and version["weight"] == 100
    assert v2["versions"]["graph_version"] == "2" and v2.get("weight", 0) == 0
    assert {"search", "rank", "write_report"} <= set(version["nodes"])
    readable = _ok(gm("graphs", "show", RESEARCH)).stdout
    assert "research_assistant" in readable and "research-v1" in readable and "rank" in readable
    assert "weight 100%" in readable and "sync no" in readable

    _fails(gm("graphs", "show", "no-such-graph"), "NOT_FOUND", "GRAPH_NOT_FOUND")


def test_disable_node_pauses_runs_until_enabled_and_resumed(gm, client):
    reason = "rank is returning garbage (cli test)"
    try:
        disabled = _json(gm("graphs", "disable-node", RESEARCH, "rank", "--reason", reason, "--as", "oncall",
                            "--json"))
        (entry,) = [d for d in disabled["disabled_nodes"] if d["node"] == "rank"]
        assert entry["reason"] == reason and entry["disabled_by"] == "oncall" and entry["disabled_at"]

        # The disabled node shows in `show` (with reason, by, at) and in `list`.
        readable = _ok(gm("graphs", "show", RESEARCH)).stdout
        line = next(li for li in readable.splitlines() if li.strip().startswith("rank "))
        assert reason in line and "by oncall at " in line
        row = next(li for li in _ok(gm("graphs", "list")).stdout.splitlines() if li.startswith(RESEARCH + " "))
        assert row.rstrip().endswith("rank")

        run = create_run(client, RESEARCH, {"question": "q", "delay_seconds": 0.2}, thread_id=new_thread("cli-dis"))
        paused = wait_status(client, run.run_id, {PAUSED, COMPLETED, FAILED})
        assert paused.status == PAUSED, paused
        assert (paused.error.code, paused.error.node) == ("NODE_DISABLED", "rank")

        # Resuming while the node is still disabled is refused, and the run stays paused.
        _fails(gm("runs", "resume", run.run_id), "FAILED_PRECONDITION", "NODE_DISABLED")
        assert wait_status(client, run.run_id, PAUSED, timeout=1).status == PAUSED

        # --reason is required; disabling an unknown node is NOT_FOUND.
        missing = gm("graphs", "disable-node", RESEARCH, "rank")
        assert missing.returncode == 2 and "--reason" in missing.stderr
        _fails(gm("graphs", "disable-node", RESEARCH, "nope", "--reason", "x"), "NOT_FOUND", "NODE_NOT_FOUND")

        enabled = _json(gm("graphs", "enable-node", RESEARCH, "rank", "--as", "oncall", "--json"))
        assert "rank" not in [d["node"] for d in enabled.get("disabled_nodes", [])]
        assert "disabled nodes  -" in _ok(gm("graphs", "show", RESEARCH)).stdout
        _fails(gm("graphs", "enable-node", RESEARCH, "rank"), "FAILED_PRECONDITION", "NODE_NOT_DISABLED")

        resumed = _json(gm("runs", "resume", run.run_id, "--json"))
        assert resumed["run_id"] == run.run_id
        assert resumed["status"] in ("RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED")
        done = wait_status(client, run.run_id, TERMINAL)
        assert done.status == COMPLETED, done
        # Resuming a run that is not paused is refused.
        _fails(gm("runs", "resume", run.run_id), "FAILED_PRECONDITION", "RUN_NOT_PAUSED")
    finally:
        _enable_if_disabled(client, RESEARCH, "rank")


def test_retry_failed_run(gm, client):
    inputs = {"question": "q", "delay_seconds": 0.2, "fail_first_attempts": 5}
    run = create_run(client, RESEARCH, inputs, thread_id=new_thread("cli-retry"))
    failed = wait_status(client, run.run_id, TERMINAL)
    assert failed.status == FAILED, failed
    assert (failed.error.code, failed.error.node) == ("NODE_FAILED", "search")

    retried = _json(gm("runs", "retry", run.run_id, "--json"))
    assert retried["run_id"] == run.run_id
    assert retried["status"] == "RUN_STATUS_QUEUED"
    assert retried["attempt"] == 2
    assert [e["code"] for e in retried["previous_errors"]] == ["NODE_FAILED"]
    assert retried["previous_errors"][0]["node"] == "search"
    # The counter of failures in the graph is per thread: this attempt may fail again or succeed.
    final = wait_status(client, run.run_id, TERMINAL)
    assert final.attempt == 2

    # Retrying a run that is not FAILED or CANCELLED is refused; when it failed again, the
    # readable output lists both earlier errors.
    if final.status == FAILED:
        readable = _ok(gm("runs", "retry", run.run_id)).stdout
        assert "attempt    3" in readable and "QUEUED" in readable
        assert "attempt 1  NODE_FAILED" in readable and "attempt 2  NODE_FAILED" in readable
        wait_status(client, run.run_id, TERMINAL)
    else:
        _fails(gm("runs", "retry", run.run_id), "FAILED_PRECONDITION", "RUN_NOT_RETRYABLE")
    _fails(gm("runs", "retry", "00000000-0000-0000-0000-000000000000"), "NOT_FOUND")


def test_cancel_with_rollback(gm, client):
    thread = new_thread("cli-rollback")
    run = create_run(client, "approval_workflow", {"action": "refund", "target": "order-1", "amount": 5},
                     thread_id=thread)
    wait_status(client, run.run_id, WAITING)
    assert thread_values(client, thread)  # the run wrote its checkpoints

    cancelled = _json(gm("runs", "cancel", run.run_id, "--rollback", "--reason", "wrong order", "--as", "oncall",
                         "--json"))
    assert cancelled["run_id"] == run.run_id and cancelled["status"] == "RUN_STATUS_CANCELLED"
    assert wait_status(client, run.run_id, CANCELLED, timeout=5).status == CANCELLED
    # Rolled back: the thread is as it was before the run, i.e. empty.
    assert not thread_values(client, thread)


def test_workers_list_and_drain(gm, mesh):
    listed = _json(gm("workers", "list", "--json"))
    workers = {w["worker_id"]: w for w in listed["workers"]}
    assert set(workers) == {"worker-1", "worker-2"}
    for w in workers.values():
        assert w["address"] and w["capacity"] >= 1 and not w.get("draining", False)
        assert {"graph": "tiny", "graph_version": "1"} in w["graphs"]

    table = _ok(gm("workers", "list")).stdout.splitlines()
    assert table[0].split()[:4] == ["WORKER", "ADDRESS", "ACTIVE", "DRAINING"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {"worker-1", "worker-2"}
    assert rows["worker-1"][3] == "no" and any(c.startswith("tiny@1") for c in rows["worker-1"])

    _fails(gm("workers", "drain", "worker-nope"), "NOT_FOUND", "worker-nope", "worker-1")
    try:
        drained = _json(gm("workers", "drain", "worker-1", "--grace", "1", "--json"))
        assert drained["worker_id"] == "worker-1" and drained["draining"] is True

        def draining_in_list():
            rows = {li.split()[0]: li.split() for li in _ok(gm("workers", "list")).stdout.splitlines()[1:]}
            return rows.get("worker-1", [None] * 4)[3] == "yes" and rows.get("worker-2", [None] * 4)[3] == "no"

        wait_for(draining_in_list, 30, interval=0.5, message="`workers list` to show worker-1 draining")
        readable = _ok(gm("workers", "drain", "worker-1")).stdout
        assert "worker     worker-1" in readable and "draining   yes" in readable
    finally:
        mesh.restart_service("worker-1")
    wait_for(lambda: {w["worker_id"]: w.get("draining", False)
                      for w in _json(gm("workers", "list", "--json"))["workers"]} == {"worker-1": False,
                                                                                      "worker-2": False},
             30, interval=0.5, message="worker-1 back and not draining")
