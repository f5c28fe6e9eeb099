"""A worker frozen past its lease cannot write the thread's state (issue 12, first defect).

A run of `fault_freeze` (tests/fixtures/fault_graphs.py: four nodes in a line; each records
that it started, works a second without yielding to the event loop, and returns) starts on
one of two workers. While it works in its second node, that worker is frozen (SIGSTOP) for longer than its lease; the other
worker takes the run over (a new lease epoch), resumes it from its last checkpoint and
completes it. Only then is the frozen worker woken (SIGCONT): the node it was in returns at
before anything else in that process runs and LangGraph tries to save its writes and the step's checkpoint. Those writes are
fenced by the run's lease (graphmesh/store/leases.py) and must be refused: the thread keeps
exactly the checkpoints the completed run left, GetThreadState shows the completed state,
and the thread's next run continues from it.

Without the fence, the woken worker saves a sibling of the newer checkpoints that becomes
the thread's latest (the run half done), and the next run continues from that.

Lost runs and real duplicates must be zero: the node in flight at the freeze runs again
under the new holder with the same LangGraph task (expected: it never completed), and no
other node runs twice. The figures go into the fault suite's table (tests/faults/conftest.py).
Waits are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg.rows import dict_row

from graphmesh.client import api_client, worker_stub
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import COMPLETED, create_run, new_thread, private_mesh, to_dict, wait_for, wait_status

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "faults.yaml"
GRAPH = "fault_freeze"
NODES = ("a", "b", "c", "d")  # as in tests/fixtures/fault_graphs.py
FROZEN_NODE = "b"
# Each node's work, which blocks its worker's event loop: the window the freeze lands in. Under
# the lease's renewal interval (a third of 3 s) plus slack, so no lease lapses without a freeze.
STEP_SECONDS = 1.0
ENV = {
    "GRAPHMESH_LEASE_SECONDS": "3",
    "GRAPHMESH_ACK_WAIT_SECONDS": "3",
    "GRAPHMESH_MAX_DELIVERIES": "20",
    "GRAPHMESH_DB_TIMEOUT_SECONDS": "2",
}
# Bounds on waits (a hung scenario fails instead of hanging), never timing assertions.
TAKEOVER_TIMEOUT = 120.0
RUN_TIMEOUT = 90.0

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS fault_effects (
    run_id text NOT NULL,
    node text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS fault_effect_log (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    node text NOT NULL,
    task text NOT NULL,
    step integer NOT NULL,
    worker text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


@pytest.fixture(scope="module")
def frozen_mesh(tmp_path_factory):
    with private_mesh("frozen", manifest=MANIFEST, workers=2, worker_concurrency=2, extra_env=ENV) as m:
        with psycopg.connect(m.database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLES)
        try:
            yield m
        finally:
            shutil.copytree(m.log_dir, tmp_path_factory.getbasetemp() / "frozen_logs", dirs_exist_ok=True)


def _query(mesh, sql: str, args=()) -> list[dict]:
    with psycopg.connect(mesh.database_url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def _lease(mesh, run_id: str) -> dict:
    return _query(mesh, "SELECT status, lease_owner, lease_epoch FROM gm_runs WHERE run_id = %s", (run_id,))[0]


def _checkpoints(mesh, thread_id: str) -> list[dict]:
    return _query(mesh, "SELECT checkpoint_id, parent_checkpoint_id, metadata FROM checkpoints "
                        "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id", (thread_id,))


def _pending_writes(mesh, thread_id: str) -> list[tuple]:
    return [(r["checkpoint_id"], r["task_id"], r["idx"]) for r in _query(
        mesh, "SELECT checkpoint_id, task_id, idx FROM checkpoint_writes WHERE thread_id = %s "
              "ORDER BY checkpoint_id, task_id, idx", (thread_id,))]


def _effects(mesh, run_id: str) -> list[dict]:
    return _query(mesh, "SELECT node, task, step, worker, pid FROM fault_effect_log WHERE run_id = %s ORDER BY id",
                  (run_id,))


def _thread_state(client, thread_id: str):
    return client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)


def _off_the_line(checkpoints: list[dict]) -> list[str]:
    """Checkpoints that are not ancestors of the latest one: siblings a stale writer left."""
    by_id = {c["checkpoint_id"]: c for c in checkpoints}
    line, current = set(), checkpoints[-1]["checkpoint_id"] if checkpoints else None
    while current is not None and current in by_id:
        line.add(current)
        current = by_id[current]["parent_checkpoint_id"]
    return [c["checkpoint_id"] for c in checkpoints if c["checkpoint_id"] not in line]


def _duplicates(effects: list[dict], frozen_pid: int) -> tuple[list[str], list[str]]:
    """(expected, real) duplicates: a node that ran more than once is expected only when
    every execution but the last was the frozen worker's with the same LangGraph task (cut
    off in flight by the freeze, so never completed); anything else ran a node twice."""
    runs: dict[str, list[dict]] = {}
    for row in effects:
        runs.setdefault(row["node"], []).append(row)
    expected, real = [], []
    for node, rows in sorted(runs.items()):
        if len(rows) < 2:
            continue
        last = rows[-1]
        trace = ", ".join(f"{r['worker']}/pid {r['pid']}/step {r['step']}" for r in rows)
        cut_off = all(r["pid"] == frozen_pid and r["task"] == last["task"] for r in rows[:-1])
        (expected if cut_off and last["pid"] != frozen_pid else real).append(f"{node} x{len(rows)} [{trace}]")
    return expected, real


def test_frozen_worker_cannot_overwrite_the_thread(frozen_mesh, fault_figures):
    mesh = frozen_mesh
    figures = fault_figures("frozen worker")
    client = api_client(mesh.api_address)
    thread = new_thread("frozen")
    run = create_run(client, GRAPH, {"step_seconds": STEP_SECONDS}, thread_id=thread)
    figures.runs = 1

    # The run is inside its second node: find the worker holding it, from Postgres.
    wait_for(lambda: any(e["node"] == FROZEN_NODE for e in _effects(mesh, run.run_id)), RUN_TIMEOUT,
             interval=0.05, message=f"run {run.run_id} to start node {FROZEN_NODE}")
    # Into the node's work, not the instant after its start was recorded (fault injection,
    # not a wait for a condition): the node must be working when frozen.
    time.sleep(STEP_SECONDS / 4)
    held = _lease(mesh, run.run_id)
    assert held["status"] == "RUNNING", held
    holder, epoch = held["lease_owner"], held["lease_epoch"]
    frozen_pid = mesh.pid(holder)
    assert frozen_pid is not None, f"no process for the lease holder {holder!r}"
    log_offset = mesh.log_path(holder).stat().st_size

    os.kill(frozen_pid, signal.SIGSTOP)
    figures.outages = 1
    woken = False
    try:
        # Another worker takes the run over (a new epoch) and completes it.
        final = wait_status(client, run.run_id, {COMPLETED}, timeout=TAKEOVER_TIMEOUT)
        after = _lease(mesh, run.run_id)
        assert after["lease_epoch"] > epoch, f"the run completed without a takeover: {after}"
        completed_checkpoints = _checkpoints(mesh, thread)
        completed_writes = _pending_writes(mesh, thread)
        completed_state = _thread_state(client, thread)
        assert to_dict(completed_state.values).get("trail") == list(NODES), to_dict(completed_state.values)

        os.kill(frozen_pid, signal.SIGCONT)
        woken = True
        woke_at = time.monotonic()
        # The woken node returns at once and LangGraph saves its writes: refused by the fence
        # (the worker logs it), or, without one, a checkpoint the completed run never wrote.
        refused = f"run {run.run_id}: checkpoint write refused"
        wait_for(lambda: refused in _log_since(mesh, holder, log_offset)
                 or len(_checkpoints(mesh, thread)) != len(completed_checkpoints)
                 or _pending_writes(mesh, thread) != completed_writes, 60, interval=0.1,
                 message=f"{holder} to try to save the stale execution's writes")
        # Then it drops the execution, and holds no run any more.
        wait_for(lambda: f"run {run.run_id} was taken over" in _log_since(mesh, holder, log_offset), 60,
                 interval=0.1, message=f"{holder} to drop its stale execution of {run.run_id}")
        wait_for(lambda: active_runs(mesh, holder) == 0, 60, interval=0.1, message=f"{holder} to be idle")
        figures.recover_seconds = time.monotonic() - woke_at
    finally:
        if not woken:
            os.kill(frozen_pid, signal.SIGCONT)

    checkpoints = _checkpoints(mesh, thread)
    stale = [c["checkpoint_id"] for c in checkpoints
             if c["checkpoint_id"] not in {k["checkpoint_id"] for k in completed_checkpoints}]
    effects = _effects(mesh, run.run_id)
    expected, real = _duplicates(effects, frozen_pid)
    figures.duplicated = len(expected) + len(real)
    figures.expected_duplicates = len(expected)
    figures.real_duplicates = len(real)
    figures.notes.append(f"{holder} (pid {frozen_pid}, epoch {epoch}) frozen in node {FROZEN_NODE}; "
                         f"taken over at epoch {after['lease_epoch']}")
    figures.notes.extend(f"checkpoint written after the takeover completed: {c}" for c in stale)
    figures.notes.extend(f"expected duplicate {d}" for d in expected)
    figures.notes.extend(f"REAL duplicate {d}" for d in real)

    # No checkpoint and no pending write by the stale execution: the thread is exactly as
    # the completed run left it, and its history is one line (no sibling of newer ones).
    assert not stale, f"the frozen worker wrote checkpoints after the takeover: {stale}"
    extra_writes = sorted(set(_pending_writes(mesh, thread)) - set(completed_writes))
    assert not extra_writes, f"the frozen worker stored pending writes after the takeover: {extra_writes}"
    assert not _off_the_line(checkpoints), f"checkpoints off the thread's line: {_off_the_line(checkpoints)}"
    assert refused in _log_since(mesh, holder, log_offset), "the fence refused no write: scenario not exercised"

    # GetThreadState shows the completed run's final state.
    state = _thread_state(client, thread)
    assert state.checkpoint_id == completed_state.checkpoint_id
    assert to_dict(state.values) == to_dict(completed_state.values)
    assert to_dict(state.values)["trail"] == list(NODES)
    assert list(state.next) == []
    assert to_dict(state.checkpoint_metadata).get("gm_run_id") == run.run_id

    # Nothing lost, no completed node ran twice; only the node in flight ran again.
    assert final.status == COMPLETED
    assert not real, f"completed nodes ran again: {real}"
    assert len(expected) <= 1, expected

    # The thread's next run continues from the completed state.
    following = create_run(client, GRAPH, {"step_seconds": 0.05}, thread_id=thread)
    figures.runs = 2
    done = wait_status(client, following.run_id, {COMPLETED}, timeout=RUN_TIMEOUT)
    figures.lost = 0 if done.status == COMPLETED else 1
    assert to_dict(_thread_state(client, thread).values)["trail"] == list(NODES) * 2
    next_effects = _effects(mesh, following.run_id)
    assert sorted(e["node"] for e in next_effects) == sorted(NODES), next_effects


def active_runs(mesh, name: str) -> int | None:
    try:
        status = worker_stub(mesh.address(name)).GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=2)
    except grpc.RpcError:
        return None
    return len(status.active_runs)


def _log_since(mesh, name: str, offset: int) -> str:
    with open(mesh.log_path(name), "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
