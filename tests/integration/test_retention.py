"""Data retention against a real mesh: RunService.PurgeThread and the retention sweeper
(graphmesh/retention/, graphmesh/retention/schedule.py).

The module runs its own mesh with tests/fixtures/retention.yaml, one graph per retention
setting. The sweeps run in the test process, against the mesh's Postgres and NATS, so each
test decides when one happens.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
import nats
import psycopg
import pytest
from psycopg.rows import dict_row

from graphmesh.bus.approvals import approval_subject
from graphmesh.bus.streams import APPROVALS_STREAM, EVENTS_STREAM, event_subject
from graphmesh.client import api_client, review_stub
from graphmesh.db import make_pool
from graphmesh.registry import Registry
from graphmesh.retention import EPOCH, Sweeper, prune_thread_checkpoints, retention_by_graph
from graphmesh.retention.purge import scan_subject
from graphmesh.retention.schedule import sweep_forever
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    CANCELLED,
    COMPLETED,
    WAITING,
    as_reviewer,
    create_run,
    decide,
    new_thread,
    private_mesh,
    rpc_error,
    thread_values,
    wait_approvals,
    wait_for,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "retention.yaml"
OPERATOR = "ops-alice"
REFUND = {"action": "refund", "target": "order-17", "amount": 42, "requested_by": "jane@example.com"}


@pytest.fixture(scope="module")
def ret_mesh():
    with private_mesh("retention", manifest=MANIFEST, workers=1) as m:
        yield m


@pytest.fixture(scope="module")
def client(ret_mesh):
    c = api_client(ret_mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def review(ret_mesh):
    return review_stub(ret_mesh.review_address)


@pytest.fixture(scope="module")
def registry():
    return Registry.from_file(MANIFEST)


# -- helpers ------------------------------------------------------------------------------------

def sql(mesh, query: str, args=()) -> list[dict]:
    with psycopg.connect(mesh.database_url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def with_backends(mesh, work):
    """Runs `work(pool, js)` in an event loop of its own, against the mesh's backends."""
    async def go():
        pool = make_pool(mesh.database_url, max_size=4, name="test-retention")
        await pool.open(wait=True, timeout=30)
        nc = await nats.connect(mesh.nats_url)
        try:
            return await work(pool, nc.jetstream())
        finally:
            await nc.close()
            await pool.close()
    return asyncio.run(go())


def sweep(mesh, registry) -> dict:
    return with_backends(mesh, lambda pool, js: Sweeper(pool, js, retention_by_graph(registry.specs())).sweep())


def event_count(mesh, run_id: str) -> int:
    async def work(pool, js):
        info = await js.stream_info(EVENTS_STREAM, subjects_filter=event_subject(run_id))
        return (info.state.subjects or {}).get(event_subject(run_id), 0)
    return with_backends(mesh, work)


def approval_event_ids(mesh, graph: str) -> list[str]:
    """The message ids (<approval id>:<kind>) of the graph's approval events in GM_APPROVALS."""
    async def work(pool, js):
        return [msg_id async for _, msg_id in scan_subject(js, APPROVALS_STREAM, approval_subject(graph), EPOCH)]
    return with_backends(mesh, work)


def purge(client, thread_id: str, reason: str = "deletion request #42", who: str = OPERATOR):
    return client.runs.PurgeThread(pb.PurgeThreadRequest(thread_id=thread_id, reason=reason),
                                   metadata=as_reviewer(who), timeout=60)


def approved_run(client, review, graph: str, thread_id: str) -> tuple[str, list[str]]:
    """An approval run taken through request, decision and completion: (run id, approval ids)."""
    run = create_run(client, graph, REFUND, thread_id=thread_id)
    wait_status(client, run.run_id, WAITING)
    approvals = wait_approvals(review, run.run_id, 1)
    decide(review, approvals[0].approval_id, "approve", reviewer="bob", comment="fine")
    wait_status(client, run.run_id, COMPLETED)
    return run.run_id, [a.approval_id for a in approvals]


def columns(mesh) -> list[tuple[str, str]]:
    """Every (table, column) of the database that can name a run, thread or approval."""
    return [(r["table_name"], r["column_name"]) for r in sql(mesh, """
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND c.column_name IN ('run_id', 'thread_id', 'approval_id', 'active_run_id')""")]


def leftovers(mesh, thread_id: str, ids: list[str]) -> dict[str, int]:
    """Rows anywhere that still name the thread or one of `ids` (runs, approvals)."""
    found = {}
    for table, column in columns(mesh):
        n = sql(mesh, f"SELECT count(*) AS n FROM {table} WHERE {column}::text = ANY(%s)",
                ([thread_id, *ids],))[0]["n"]
        if n:
            found[f"{table}.{column}"] = n
    for table, expr in (("gm_outbox", "msg_id"), ("gm_spans", "attributes::text"), ("gm_audit", "details::text"),
                        ("checkpoints", "metadata::text")):
        n = sql(mesh, f"SELECT count(*) AS n FROM {table} WHERE " + " OR ".join([f"{expr} LIKE %s"] * len(ids)),
                [f"%{i}%" for i in ids])[0]["n"] if ids else 0
        if n:
            found[f"{table}.{expr}"] = n
    spans = sql(mesh, "SELECT count(*) AS n FROM gm_spans WHERE attributes ->> 'graphmesh.thread_id' = %s",
                (thread_id,))[0]["n"]
    if spans:
        found["gm_spans.thread"] = spans
    return found


def spans_of(mesh, run_id: str) -> int:
    return sql(mesh, "SELECT count(*) AS n FROM gm_spans WHERE run_id = %s", (run_id,))[0]["n"]


def wait_spans(mesh, run_id: str) -> int:
    """The run's span count once its whole trace is stored: the worker's execution span is
    there and nothing more arrived for a few export periods (processes export every 500 ms)."""
    wait_for(lambda: sql(mesh, "SELECT 1 FROM gm_spans WHERE run_id = %s AND name LIKE 'run.execute%%'",
                         (run_id,)), 30, message=f"spans of run {run_id}")
    trace = sql(mesh, "SELECT trace_id FROM gm_spans WHERE run_id = %s LIMIT 1", (run_id,))[0]["trace_id"]
    seen = [-1]

    def settled() -> bool:
        n = sql(mesh, "SELECT count(*) AS n FROM gm_spans WHERE trace_id = %s", (trace,))[0]["n"]
        quiet, seen[0] = n == seen[0], n
        return quiet

    wait_for(settled, 30, interval=1.5, message=f"the trace of run {run_id} to be fully stored")
    return spans_of(mesh, run_id)


def checkpoints(mesh, thread_id: str) -> list[dict]:
    return sql(mesh, "SELECT checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions' AS versions "
                     "FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns, checkpoint_id DESC", (thread_id,))


# -- PurgeThread --------------------------------------------------------------------------------

def test_purge_thread_removes_every_trace_and_leaves_one_audit_record(ret_mesh, client, review):
    graph = "approval_workflow"
    thread, other = new_thread("purge"), new_thread("keep")
    run1, approvals1 = approved_run(client, review, graph, thread)
    # A second run on the thread, cancelled while it waits: a cancelled approval, its audit record.
    run2 = create_run(client, graph, REFUND, thread_id=thread)
    wait_status(client, run2.run_id, WAITING)
    approvals2 = [a.approval_id for a in wait_approvals(review, run2.run_id, 1)]
    client.runs.CancelRun(pb.CancelRunRequest(run_id=run2.run_id, reason="changed my mind"), timeout=30)
    wait_status(client, run2.run_id, CANCELLED)
    kept_run, kept_approvals = approved_run(client, review, graph, other)
    runs, approval_ids = [run1, run2.run_id], approvals1 + approvals2
    ids = runs + approval_ids
    for run_id in runs + [kept_run]:
        wait_spans(ret_mesh, run_id)
    # Rows the happy path leaves no more of: a dead letter and an unpublished outbox message.
    sql(ret_mesh, "INSERT INTO gm_dead_letters (run_id, attempt, deliveries, worker_id, reason) "
                  "VALUES (%s, 1, 5, 'worker-x', 'test')", (run1,))
    sql(ret_mesh, "INSERT INTO gm_outbox (subject, msg_id, payload) VALUES (%s, %s, %s)",
        (approval_subject(graph), f"{approvals1[0]}:requested", b"x"))
    before = leftovers(ret_mesh, thread, ids)
    for store in ("gm_runs.run_id", "gm_approvals.approval_id", "gm_audit.run_id", "checkpoints.thread_id",
                  "gm_dead_letters.run_id", "gm_spans.run_id", "gm_threads.thread_id"):
        assert before.get(store), f"nothing in {store} to purge: {before}"
    assert all(event_count(ret_mesh, r) for r in runs)
    assert {i.split(":")[0] for i in approval_event_ids(ret_mesh, graph)} >= set(approval_ids + kept_approvals)

    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "REASON_REQUIRED"):
        purge(client, thread, reason=" ")
    with rpc_error(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"):
        purge(client, new_thread("nobody"))

    response = purge(client, thread)

    deleted = dict(response.deleted)
    assert deleted["runs"] == 2 and deleted["threads"] == 1 and deleted["approvals"] == 2, deleted
    assert deleted["dead_letters"] == 1 and deleted["outbox"] == 1, deleted
    for store in ("audit_records", "checkpoints", "checkpoint_blobs", "spans", "events", "approval_events"):
        assert deleted[store] > 0, f"{store}: {deleted}"
    # Everything is gone; a run's last spans may reach the trace store just after the purge
    # (batched export) and are deleted again by its follow-up a few seconds later.
    wait_for(lambda: leftovers(ret_mesh, thread, ids) == {}, 20,
             message=lambda: f"no trace of the thread left: {leftovers(ret_mesh, thread, ids)}")
    assert not any(event_count(ret_mesh, r) for r in runs)
    remaining = {i.split(":")[0] for i in approval_event_ids(ret_mesh, graph)}
    assert not remaining & set(approval_ids) and set(kept_approvals) <= remaining

    # Exactly one audit record stays: who, why and how much; nothing of the thread's content.
    audit = sql(ret_mesh, "SELECT * FROM gm_audit WHERE details ->> 'thread_id' = %s", (thread,))
    assert len(audit) == 1, audit
    record = audit[0]
    assert record["record_id"] == response.audit_record_id
    assert (record["action"], record["actor"], record["run_id"], record["approval_id"]) == \
        ("thread_purged", OPERATOR, None, None)
    assert record["details"]["reason"] == "deletion request #42"
    assert record["details"]["deleted"] == deleted
    text = str(record["details"])
    assert "order-17" not in text and "jane@example.com" not in text

    # The api knows none of it any more.
    for run_id in runs:
        with rpc_error(grpc.StatusCode.NOT_FOUND):
            client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
        with rpc_error(grpc.StatusCode.NOT_FOUND):
            list(client.runs.StreamRun(pb.StreamRunRequest(run_id=run_id), timeout=10))
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"):
        purge(client, thread)

    # The other thread of the graph is untouched.
    assert thread_values(client, other)["applied"] is True
    assert spans_of(ret_mesh, kept_run) and event_count(ret_mesh, kept_run)
    assert sql(ret_mesh, "SELECT count(*) AS n FROM gm_audit WHERE run_id = %s", (kept_run,))[0]["n"] >= 2

    # The thread id is free again: a new run starts a new thread under it.
    again = create_run(client, "ret_keep", {"item": "fresh"}, thread_id=thread)
    wait_status(client, again.run_id, COMPLETED)
    assert thread_values(client, thread)["items"] == ["fresh"]


def test_purge_is_refused_while_a_run_is_in_progress(ret_mesh, client, review):
    thread = new_thread("busy")
    run = create_run(client, "approval_workflow", REFUND, thread_id=thread)
    wait_status(client, run.run_id, WAITING)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_ACTIVE") as err:
        purge(client, thread)
    assert run.run_id in err["details"] and "cancel" in err["details"]
    assert sql(ret_mesh, "SELECT count(*) AS n FROM gm_runs WHERE thread_id = %s", (thread,))[0]["n"] == 1
    assert not sql(ret_mesh, "SELECT 1 FROM gm_audit WHERE details ->> 'thread_id' = %s", (thread,))

    client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="to purge"), timeout=30)
    wait_status(client, run.run_id, CANCELLED)
    cli = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                          "--api", ret_mesh.api_address, "threads", "purge", thread, "--reason", "erasure request"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"thread {thread} purged" in cli.stdout and "1 runs" in cli.stdout


# -- DeleteRun ----------------------------------------------------------------------------------

def delete(client, run_id: str, reason: str = "mistaken run #7", who: str = OPERATOR):
    return client.runs.DeleteRun(pb.DeleteRunRequest(run_id=run_id, reason=reason),
                                 metadata=as_reviewer(who), timeout=60)


def test_delete_run_removes_one_run_and_keeps_its_thread(ret_mesh, client, review):
    graph = "approval_workflow"
    thread = new_thread("delrun")
    doomed, doomed_approvals = approved_run(client, review, graph, thread)
    kept, kept_approvals = approved_run(client, review, graph, thread)
    for run_id in (doomed, kept):
        wait_spans(ret_mesh, run_id)
    state_before = thread_values(client, thread)
    checkpoints_before = checkpoints(ret_mesh, thread)
    assert event_count(ret_mesh, doomed) and spans_of(ret_mesh, doomed)

    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "REASON_REQUIRED"):
        delete(client, doomed, reason="")
    for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-run"):  # as GetRun answers
        with rpc_error(grpc.StatusCode.NOT_FOUND):
            delete(client, unknown)

    response = delete(client, doomed)

    deleted = dict(response.deleted)
    assert response.run_id == doomed and response.thread_id == thread
    assert deleted["runs"] == 1 and deleted["approvals"] == len(doomed_approvals), deleted
    for store in ("audit_records", "spans", "events", "approval_events"):
        assert deleted[store] > 0, f"{store}: {deleted}"
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetRun(pb.GetRunRequest(run_id=doomed), timeout=10)
    assert not sql(ret_mesh, "SELECT 1 FROM gm_approvals WHERE run_id = %s", (doomed,))
    assert not sql(ret_mesh, "SELECT 1 FROM gm_audit WHERE run_id = %s", (doomed,))
    assert spans_of(ret_mesh, doomed) == 0 and event_count(ret_mesh, doomed) == 0
    remaining = {i.split(":")[0] for i in approval_event_ids(ret_mesh, graph)}
    assert not remaining & set(doomed_approvals) and set(kept_approvals) <= remaining
    # The other run, the thread, its state and every checkpoint stay.
    assert client.runs.GetRun(pb.GetRunRequest(run_id=kept), timeout=10).run.status == COMPLETED
    assert sql(ret_mesh, "SELECT 1 FROM gm_audit WHERE run_id = %s", (kept,))
    assert thread_values(client, thread) == state_before
    assert checkpoints(ret_mesh, thread) == checkpoints_before
    # One audit record says who deleted what and why, with counts only.
    (record,) = sql(ret_mesh, "SELECT * FROM gm_audit WHERE action = 'run_deleted' AND details ->> 'run_id' = %s",
                    (doomed,))
    assert record["record_id"] == response.audit_record_id and record["actor"] == OPERATOR
    assert record["details"]["reason"] == "mistaken run #7" and record["details"]["deleted"] == deleted
    assert "order-17" not in str(record["details"])
    with rpc_error(grpc.StatusCode.NOT_FOUND):  # deleted once
        delete(client, doomed)


def test_delete_run_is_refused_while_it_is_in_progress(ret_mesh, client, review):
    run = create_run(client, "approval_workflow", REFUND, thread_id=new_thread("delbusy"))
    wait_status(client, run.run_id, WAITING)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "RUN_ACTIVE") as err:
        delete(client, run.run_id)
    assert "cancel it first" in err["details"]
    assert wait_approvals(review, run.run_id, 1)  # nothing was taken
    client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="to delete"), timeout=30)
    wait_status(client, run.run_id, CANCELLED)
    cli = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                          "--api", ret_mesh.api_address, "runs", "delete", run.run_id, "--reason", "cleanup"],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"run {run.run_id} of thread {run.thread_id} deleted" in cli.stdout and "1 runs" in cli.stdout


# -- the sweeper --------------------------------------------------------------------------------

def test_checkpoint_pruning_keeps_the_newest_and_the_thread_resumes(ret_mesh, client, registry):
    thread = new_thread("long")
    for item in ("a", "b", "c"):
        run = create_run(client, "ret_keep", {"item": item}, thread_id=thread)
        wait_status(client, run.run_id, COMPLETED)
    before = checkpoints(ret_mesh, thread)
    assert len(before) > 2
    newest = [c["checkpoint_id"] for c in before][:2]

    report = sweep(ret_mesh, registry)

    assert report["ret_keep"]["checkpoints_pruned"] >= len(before) - 2
    after = checkpoints(ret_mesh, thread)
    assert [c["checkpoint_id"] for c in after] == newest
    # Every blob a kept checkpoint references is still there; no other blob is.
    referenced = {(ch, v) for c in after for ch, v in c["versions"].items()}
    blobs = {(b["channel"], b["version"]) for b in sql(
        ret_mesh, "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = %s", (thread,))}
    assert blobs <= referenced
    assert ("items", after[0]["versions"]["items"]) in blobs
    writes = {w["checkpoint_id"] for w in sql(
        ret_mesh, "SELECT DISTINCT checkpoint_id FROM checkpoint_writes WHERE thread_id = %s", (thread,))}
    assert writes <= set(newest)
    assert thread_values(client, thread) == {"item": "c", "items": ["a", "b", "c"], "count": 3}

    run = create_run(client, "ret_keep", {"item": "d"}, thread_id=thread)
    wait_status(client, run.run_id, COMPLETED)
    assert thread_values(client, thread) == {"item": "d", "items": ["a", "b", "c", "d"], "count": 4}
    assert sweep(ret_mesh, registry)["ret_keep"]["checkpoints_pruned"] > 0
    assert len(checkpoints(ret_mesh, thread)) == 2
    assert thread_values(client, thread)["items"] == ["a", "b", "c", "d"]

    # Down to its latest checkpoint alone, the thread still continues.
    latest = checkpoints(ret_mesh, thread)[0]["checkpoint_id"]
    assert with_backends(ret_mesh, lambda pool, js: prune_thread_checkpoints(pool, thread, 1)) == 1
    assert [c["checkpoint_id"] for c in checkpoints(ret_mesh, thread)] == [latest]
    run = create_run(client, "ret_keep", {"item": "e"}, thread_id=thread)
    wait_status(client, run.run_id, COMPLETED)
    assert thread_values(client, thread) == {"item": "e", "items": ["a", "b", "c", "d", "e"], "count": 5}


def test_finished_threads_expire(ret_mesh, client, registry):
    expiring, other = new_thread("old"), new_thread("other")
    run = create_run(client, "ret_expire", {"item": "x"}, thread_id=expiring)
    wait_status(client, run.run_id, COMPLETED)
    wait_spans(ret_mesh, run.run_id)
    kept = create_run(client, "ret_keep", {"item": "y"}, thread_id=other)  # another graph: no expiry
    wait_status(client, kept.run_id, COMPLETED)
    time.sleep(1.0)  # threads_days 0.00001 is 0.86 s

    # The api's loop, run here with a short period, as server.py would run it.
    async def loop(pool, js):
        task = asyncio.create_task(sweep_forever(pool, js, registry, every_seconds=0.2))
        try:
            for _ in range(300):
                if not await _exists(pool, expiring):
                    return True
                await asyncio.sleep(0.1)
            return False
        finally:
            task.cancel()

    assert with_backends(ret_mesh, loop), "the expired thread is still there"
    assert leftovers(ret_mesh, expiring, [run.run_id]) == {}
    assert event_count(ret_mesh, run.run_id) == 0
    audit = sql(ret_mesh, "SELECT * FROM gm_audit WHERE details ->> 'thread_id' = %s", (expiring,))
    assert [(a["action"], a["actor"]) for a in audit] == [("thread_expired", "system:retention")]
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        client.runs.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=10)
    assert thread_values(client, other)["items"] == ["y"]


async def _exists(pool, thread_id: str):
    async with pool.connection() as conn:
        return await (await conn.execute("SELECT 1 FROM gm_threads WHERE thread_id = %s", (thread_id,))).fetchall()


def test_old_spans_and_events_go_newer_stay(ret_mesh, client, registry):
    old_thread, new_thread_id = new_thread("old"), new_thread("new")
    old = create_run(client, "ret_data", {"item": "old"}, thread_id=old_thread)
    wait_status(client, old.run_id, COMPLETED)
    new = create_run(client, "ret_data", {"item": "new"}, thread_id=new_thread_id)
    wait_status(client, new.run_id, COMPLETED)
    old_spans, new_spans = wait_spans(ret_mesh, old.run_id), wait_spans(ret_mesh, new.run_id)
    trace = sql(ret_mesh, "SELECT trace_id FROM gm_spans WHERE run_id = %s LIMIT 1", (old.run_id,))[0]["trace_id"]
    # Two days old: past traces_days and events_days (1).
    sql(ret_mesh, "UPDATE gm_spans SET recorded_at = now() - interval '2 days' WHERE trace_id = %s", (trace,))
    sql(ret_mesh, "UPDATE gm_runs SET finished_at = now() - interval '2 days' WHERE run_id = %s", (old.run_id,))
    assert event_count(ret_mesh, old.run_id) and event_count(ret_mesh, new.run_id)

    report = sweep(ret_mesh, registry)

    assert report["ret_data"]["spans_deleted"] >= old_spans
    assert spans_of(ret_mesh, old.run_id) == 0
    assert not sql(ret_mesh, "SELECT 1 FROM gm_spans WHERE trace_id = %s", (trace,))
    assert spans_of(ret_mesh, new.run_id) == new_spans
    assert event_count(ret_mesh, old.run_id) == 0
    assert event_count(ret_mesh, new.run_id) > 0
    # Runs and threads stay (threads_days is 0: forever).
    assert thread_values(client, old_thread)["items"] == ["old"]


def test_decided_reviews_expire_with_their_audit_records(ret_mesh, client, review, registry):
    graph = "ret_reviews"
    run_id, approval_ids = approved_run(client, review, graph, new_thread("review"))
    waiting = create_run(client, graph, REFUND, thread_id=new_thread("pending"))
    wait_status(client, waiting.run_id, WAITING)
    pending = [a.approval_id for a in wait_approvals(review, waiting.run_id, 1)]
    assert sql(ret_mesh, "SELECT count(*) AS n FROM gm_audit WHERE approval_id = ANY(%s)", (approval_ids,))[0]["n"]
    time.sleep(2.0)  # reviews_days 0.00002 is 1.7 s

    report = sweep(ret_mesh, registry)

    assert report[graph]["reviews_deleted"] == 1
    assert not sql(ret_mesh, "SELECT 1 FROM gm_approvals WHERE approval_id = ANY(%s)", (approval_ids,))
    assert not sql(ret_mesh, "SELECT 1 FROM gm_audit WHERE approval_id = ANY(%s)", (approval_ids,))
    # A pending approval stays, whatever its age; so does the run of the decided one.
    assert sql(ret_mesh, "SELECT 1 FROM gm_approvals WHERE approval_id = ANY(%s)", (pending,))
    assert sql(ret_mesh, "SELECT status FROM gm_runs WHERE run_id = %s", (run_id,))[0]["status"] == "COMPLETED"
    remaining = {i.split(":")[0] for i in approval_event_ids(ret_mesh, graph)}
    assert not remaining & set(approval_ids)
    client.runs.CancelRun(pb.CancelRunRequest(run_id=waiting.run_id, reason="done"), timeout=30)
