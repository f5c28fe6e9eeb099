"""ThreadService against the shared mesh: threads created before their first run, metadata
merge and replace, the status derived from the latest run (idle, busy, interrupted with the
pending approvals as interrupts, error), searching and counting in SQL, checkpoint history,
state updates (as a node, as __end__, from a past checkpoint) and purging a thread that
never ran. Permissions (a submitter sees only its own threads) on a small token mesh.

Tests share threads through module fixtures, in file order.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest

from graphmesh.client import channel, review_stub
from graphmesh.store.schema import MIGRATIONS
from graphmesh.v1 import run_pb2, run_service_pb2_grpc, thread_pb2, thread_service_pb2_grpc
from graphmesh.v1 import run_service_pb2 as runpb
from graphmesh.v1 import thread_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    QUEUED,
    WAITING,
    as_reviewer,
    create_run,
    list_audit,
    private_mesh,
    rpc_error,
    struct,
    to_dict,
    wait_approvals,
    wait_status,
)

IDLE, BUSY = thread_pb2.THREAD_STATUS_IDLE, thread_pb2.THREAD_STATUS_BUSY
INTERRUPTED, ERROR = thread_pb2.THREAD_STATUS_INTERRUPTED, thread_pb2.THREAD_STATUS_ERROR
APPROVAL_INPUT = {"action": "refund", "target": "order-9", "amount": 12, "requested_by": "ann"}
ANN = as_reviewer("ann")  # development auth: the caller names itself


@pytest.fixture(scope="module")
def threads(mesh):
    ch = channel(mesh.api_address)
    yield thread_service_pb2_grpc.ThreadServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def suite() -> str:
    """Metadata every thread of this module carries, so searches see only ours."""
    return f"threads-{uuid.uuid4().hex[:8]}"


def create_thread(threads, suite: str, thread_id: str = "", **metadata) -> pb.Thread:
    request = pb.CreateThreadRequest(thread_id=thread_id, metadata=struct({"suite": suite, **metadata}))
    return threads.CreateThread(request, metadata=ANN, timeout=10).thread


def get_thread(threads, thread_id: str, values: bool = False) -> pb.Thread:
    return threads.GetThread(pb.GetThreadRequest(thread_id=thread_id, include_values=values), metadata=ANN,
                             timeout=30).thread


def listed(threads, suite: str, **fields) -> list[str]:
    fields.setdefault("limit", 100)
    request = pb.ListThreadsRequest(metadata=struct({"suite": suite, **fields.pop("meta", {})}), **fields)
    return [t.thread_id for t in threads.ListThreads(request, metadata=ANN, timeout=30).threads]


def counted(threads, suite: str, **fields) -> int:
    request = pb.CountThreadsRequest(metadata=struct({"suite": suite}), **fields)
    return threads.CountThreads(request, metadata=ANN, timeout=30).count


# -- records ------------------------------------------------------------------------------

def test_create_get_and_update_a_thread(threads, suite):
    tid = str(uuid.uuid4())
    thread = create_thread(threads, suite, tid, graph_id="tiny", user="ann", tags=["a", "b"])
    assert (thread.thread_id, thread.graph, thread.owner, thread.status) == (tid, "", "ann", IDLE)
    assert to_dict(thread.metadata) == {"suite": suite, "graph_id": "tiny", "user": "ann", "tags": ["a", "b"]}
    assert not thread.latest_run_id and not thread.active_run_id and not thread.interrupts

    with rpc_error(grpc.StatusCode.ALREADY_EXISTS, "THREAD_EXISTS"):
        threads.CreateThread(pb.CreateThreadRequest(thread_id=tid), metadata=ANN, timeout=10)
    again = threads.CreateThread(pb.CreateThreadRequest(thread_id=tid, if_exists=pb.IF_EXISTS_DO_NOTHING,
                                                        metadata=struct({"other": 1})), metadata=ANN, timeout=10)
    assert not again.created and again.thread.created_at == thread.created_at
    assert "other" not in to_dict(again.thread.metadata)  # DO_NOTHING leaves it unchanged

    fresh = threads.CreateThread(pb.CreateThreadRequest(), metadata=ANN, timeout=10)
    assert fresh.created and uuid.UUID(fresh.thread.thread_id)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND"):
        threads.CreateThread(pb.CreateThreadRequest(graph="no-such-graph"), metadata=ANN, timeout=10)

    merged = threads.UpdateThread(pb.UpdateThreadRequest(thread_id=tid, metadata=struct({"user": "bob", "n": 2})),
                                  metadata=ANN, timeout=10).thread
    assert to_dict(merged.metadata) == {"suite": suite, "graph_id": "tiny", "user": "bob", "tags": ["a", "b"], "n": 2}
    assert merged.updated_at.ToDatetime() >= thread.updated_at.ToDatetime()
    request = pb.UpdateThreadRequest(thread_id=tid, metadata=struct({"suite": suite, "only": True}))
    request.update_mask.paths.append("metadata")
    replaced = threads.UpdateThread(request, metadata=ANN, timeout=10).thread
    assert to_dict(replaced.metadata) == {"suite": suite, "only": True}
    request.update_mask.paths[:] = ["graph"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK"):
        threads.UpdateThread(request, metadata=ANN, timeout=10)

    with rpc_error(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"):
        get_thread(threads, f"missing-{uuid.uuid4()}")
    with rpc_error(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"):
        threads.UpdateThread(pb.UpdateThreadRequest(thread_id=f"missing-{uuid.uuid4()}"), metadata=ANN, timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        get_thread(threads, "")
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "METADATA_TOO_LARGE"):
        threads.UpdateThread(pb.UpdateThreadRequest(thread_id=tid, metadata=struct({"big": "x" * 70_000})),
                             metadata=ANN, timeout=10)


# -- status from runs ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def ran(client, threads, suite) -> dict[str, tuple[str, str]]:
    """name -> (thread id, run id): a completed tiny run, a run waiting for approval, a
    failed run, and a thread whose waiting run has another queued behind it."""
    out = {}
    for name, graph, graph_input in (("done", "tiny", {"text": "one two three"}),
                                     ("waiting", "approval_workflow", APPROVAL_INPUT),
                                     ("failed", "approval_workflow", {**APPROVAL_INPUT, "action": "nope"}),
                                     ("busy", "approval_workflow", APPROVAL_INPUT)):
        tid = create_thread(threads, suite, kind=name).thread_id
        out[name] = (tid, create_run(client, graph, graph_input, thread_id=tid, metadata=ANN_RUN).run_id)
    for name, status in (("done", COMPLETED), ("waiting", WAITING), ("failed", FAILED), ("busy", WAITING)):
        wait_status(client, out[name][1], status)
    queued = create_run(client, "approval_workflow", APPROVAL_INPUT, thread_id=out["busy"][0],
                        multitask_strategy=run_pb2.MULTITASK_STRATEGY_ENQUEUE)
    assert queued.status == QUEUED
    return out


# CreateRun's metadata is the run's own (map<string,string>), not the caller's name.
ANN_RUN = {"origin": "test_threads_service"}


def test_status_follows_the_latest_run(threads, ran, mesh):
    done = get_thread(threads, ran["done"][0], values=True)
    assert (done.status, done.graph, done.latest_run_id, done.active_run_id) == (IDLE, "tiny", ran["done"][1], "")
    assert to_dict(done.values)["word_count"] == 3
    assert done.owner == "ann"  # its creator, not the run's owner

    waiting = get_thread(threads, ran["waiting"][0])
    assert waiting.status == INTERRUPTED and waiting.active_run_id == ran["waiting"][1]
    approvals = wait_approvals(review_stub(mesh.review_address), ran["waiting"][1], 1)
    [interrupt] = waiting.interrupts
    assert (interrupt.approval_id, interrupt.run_id, interrupt.node) == (
        approvals[0].approval_id, ran["waiting"][1], "review")
    assert interrupt.interrupt_id == approvals[0].interrupt_id
    assert to_dict(interrupt.value)["kind"] == "approval"

    assert get_thread(threads, ran["failed"][0]).status == ERROR
    assert get_thread(threads, ran["busy"][0]).status == BUSY


def test_a_waiting_threads_state_shows_its_interrupt(client, ran, mesh):
    """GetThreadState's snapshot, as LangGraph's aget_state: the task waiting at interrupt()
    with its interrupt (from the checkpoint's pending writes), the snapshot's interrupts, and
    the approval each one became (RemoteGraph reads these through the gateway)."""
    tid, run_id = ran["waiting"]
    (approval,) = wait_approvals(review_stub(mesh.review_address), run_id, 1)
    snapshot = client.runs.GetThreadState(runpb.GetThreadStateRequest(thread_id=tid), metadata=ANN,
                                          timeout=30).snapshot
    assert list(snapshot.next) == ["review"]
    (task,) = snapshot.tasks
    assert task.name == "review"
    named = (approval.interrupt_id, approval.approval_id, run_id, "review")
    assert [(i.interrupt_id, i.approval_id, i.run_id, i.node) for i in task.interrupts] == [named]
    assert [(i.interrupt_id, i.approval_id, i.run_id, i.node) for i in snapshot.interrupts] == [named]
    assert to_dict(snapshot.interrupts[0].value)["node"] == "apply_change"
    # At the checkpoint named explicitly, the same.
    again = client.runs.GetThreadState(runpb.GetThreadStateRequest(thread_id=tid, checkpoint_id=snapshot.checkpoint_id),
                                       metadata=ANN, timeout=30).snapshot
    assert [i.interrupt_id for i in again.interrupts] == [approval.interrupt_id]


def test_search_and_count_by_status_metadata_graph_ids_and_values(threads, ran, suite):
    ids = {name: tid for name, (tid, _) in ran.items()}
    assert set(listed(threads, suite, meta={"kind": "done"})) == {ids["done"]}
    assert listed(threads, suite, status=INTERRUPTED) == [ids["waiting"]]
    assert listed(threads, suite, status=ERROR) == [ids["failed"]]
    assert listed(threads, suite, status=BUSY) == [ids["busy"]]
    assert ids["done"] in listed(threads, suite, status=IDLE)
    assert listed(threads, suite, graph="tiny") == [ids["done"]]
    assert set(listed(threads, suite, thread_ids=[ids["failed"], ids["busy"], "not-a-thread"])) == {
        ids["failed"], ids["busy"]}
    assert counted(threads, suite, status=INTERRUPTED) == 1
    assert counted(threads, suite, graph="approval_workflow") == 3

    # Values are the latest checkpoint's: read per candidate thread.
    assert listed(threads, suite, values=struct({"word_count": 3})) == [ids["done"]]
    assert listed(threads, suite, values=struct({"proposed_change": {"target": "order-9"}}),
                  sort_by=pb.THREAD_SORT_BY_THREAD_ID, ascending=True) == sorted([ids["waiting"], ids["busy"]])
    assert counted(threads, suite, values=struct({"action": "refund"})) == 2
    page = threads.ListThreads(pb.ListThreadsRequest(metadata=struct({"suite": suite}), include_values=True,
                                                     thread_ids=[ids["done"]]), metadata=ANN, timeout=30)
    assert to_dict(page.threads[0].values)["summary"]

    # Paging: newest first by default, the order asked otherwise, has_more while more match.
    newest = threads.ListThreads(pb.ListThreadsRequest(metadata=struct({"suite": suite}), limit=100),
                                 metadata=ANN, timeout=10).threads
    created = [(t.created_at.ToDatetime(), t.thread_id) for t in newest]
    assert created == sorted(created, reverse=True) and len(created) >= 5
    by_id = listed(threads, suite, sort_by=pb.THREAD_SORT_BY_THREAD_ID, ascending=True)
    assert by_id == sorted(by_id)
    first = threads.ListThreads(pb.ListThreadsRequest(metadata=struct({"suite": suite}), limit=2,
                                                      sort_by=pb.THREAD_SORT_BY_THREAD_ID, ascending=True),
                                metadata=ANN, timeout=10)
    rest = threads.ListThreads(pb.ListThreadsRequest(metadata=struct({"suite": suite}), limit=100, offset=2,
                                                     sort_by=pb.THREAD_SORT_BY_THREAD_ID, ascending=True),
                               metadata=ANN, timeout=10)
    assert first.has_more and not rest.has_more
    assert [t.thread_id for t in first.threads] + [t.thread_id for t in rest.threads] == by_id
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        threads.ListThreads(pb.ListThreadsRequest(limit=1001), metadata=ANN, timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        threads.ListThreads(pb.ListThreadsRequest(status=99), metadata=ANN, timeout=10)


# -- history and state updates -------------------------------------------------------------

def history(threads, thread_id: str, **fields) -> list:
    request = pb.GetThreadHistoryRequest(thread_id=thread_id, **fields)
    return list(threads.GetThreadHistory(request, metadata=ANN, timeout=30).snapshots)


def test_history_newest_first_with_limit_before_metadata_and_start(threads, ran):
    tid, run_id = ran["done"]
    snapshots = history(threads, tid, limit=100)
    steps = [int(to_dict(s.metadata)["step"]) for s in snapshots]
    assert steps == sorted(steps, reverse=True) and steps[-1] == -1 and len(steps) == 5
    for newer, older in zip(snapshots, snapshots[1:]):
        assert newer.parent_checkpoint_id == older.checkpoint_id
        assert newer.created_at.ToDatetime() >= older.created_at.ToDatetime()
    meta = to_dict(snapshots[0].metadata)
    assert (meta["graph"], meta["graph_version"], meta["gm_run_id"]) == ("tiny", "1", run_id)
    assert to_dict(snapshots[0].values)["summary"] and not snapshots[0].next
    assert snapshots[1].next == ["summarize"] and [t.name for t in snapshots[1].tasks] == ["summarize"]

    assert [s.checkpoint_id for s in history(threads, tid)] == [s.checkpoint_id for s in snapshots]  # default 10
    assert [s.checkpoint_id for s in history(threads, tid, limit=2)] == [s.checkpoint_id for s in snapshots[:2]]
    before = history(threads, tid, limit=100, before_checkpoint_id=snapshots[1].checkpoint_id)
    assert [s.checkpoint_id for s in before] == [s.checkpoint_id for s in snapshots[2:]]
    start = history(threads, tid, limit=2, checkpoint_id=snapshots[2].checkpoint_id)
    assert [s.checkpoint_id for s in start] == [s.checkpoint_id for s in snapshots[2:4]]
    [one] = history(threads, tid, limit=100, metadata=struct({"step": 1}))
    assert one.checkpoint_id == snapshots[2].checkpoint_id
    with rpc_error(grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND"):
        history(threads, tid, checkpoint_id=str(uuid.uuid4()))

    # The waiting thread's latest snapshot shows the interrupt with its approval.
    [waiting] = history(threads, ran["waiting"][0], limit=1)
    [task] = [t for t in waiting.tasks if t.interrupts]
    assert task.name == "review" and task.interrupts[0].approval_id
    assert waiting.interrupts[0].interrupt_id == task.interrupts[0].interrupt_id


def update(threads, thread_id: str, values=None, **fields) -> str:
    request = pb.UpdateThreadStateRequest(thread_id=thread_id, **fields)
    if values is not None:
        request.values.struct_value.update(values)
    return threads.UpdateThreadState(request, metadata=ANN, timeout=30).checkpoint_id


def test_update_state_as_a_node_from_a_checkpoint_and_refusals(threads, ran, mesh):
    tid, _ = ran["done"]
    before = history(threads, tid, limit=100)
    checkpoint = update(threads, tid, {"summary": "edited by hand"}, as_node="summarize")
    latest = history(threads, tid, limit=1)[0]
    assert latest.checkpoint_id == checkpoint and latest.parent_checkpoint_id == before[0].checkpoint_id
    meta = to_dict(latest.metadata)
    assert (meta["source"], meta["graph"], meta["graph_version"], meta["state_schema_version"]) == (
        "update", "tiny", "1", "1")
    assert to_dict(get_thread(threads, tid, values=True).values)["summary"] == "edited by hand"

    # A branch from a past checkpoint: its parent is that checkpoint.
    branched = update(threads, tid, {"text": "branch"}, as_node="normalize", checkpoint_id=before[3].checkpoint_id)
    state = history(threads, tid, limit=1, checkpoint_id=branched)[0]
    assert state.parent_checkpoint_id == before[3].checkpoint_id and state.next == ["count"]

    records = [r for r in list_audit(review_stub(mesh.review_address), thread_id=tid)
               if r.action == "thread_state_updated"]
    assert [to_dict(r.details)["checkpoint_id"] for r in records] == [checkpoint, branched]
    assert records[0].actor == "ann" and to_dict(records[1].details)["from_checkpoint_id"] == before[3].checkpoint_id

    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_STATE_UPDATE"):
        update(threads, tid, {"summary": "x"}, as_node="no_such_node")
    with rpc_error(grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND"):
        update(threads, tid, {"summary": "x"}, as_node="summarize", checkpoint_id=str(uuid.uuid4()))
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_BUSY"):
        update(threads, ran["waiting"][0], {"reason": "x"}, as_node="prepare")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_GRAPH_MISMATCH"):
        update(threads, tid, {"summary": "x"}, as_node="summarize", graph="approval_workflow")


def test_update_state_of_a_thread_that_never_ran(threads, suite):
    bare = create_thread(threads, suite).thread_id
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "THREAD_HAS_NO_GRAPH"):
        update(threads, bare, {"action": "refund"}, as_node="prepare")

    # The graph comes from metadata.graph_id (LangGraph's server reads it there too).
    tid = create_thread(threads, suite, graph_id="approval_workflow").thread_id
    update(threads, tid, {"action": "refund", "target": "t-1"}, as_node="prepare")
    thread = get_thread(threads, tid, values=True)
    # The update left a node to run and no run ended it: interrupted, as at a static interrupt.
    assert (thread.graph, thread.status) == ("approval_workflow", INTERRUPTED)
    assert to_dict(thread.values) == {"action": "refund", "target": "t-1"}
    assert history(threads, tid, limit=1)[0].next == ["review"]

    update(threads, tid, as_node="__end__")  # no values: ends the pending work
    assert history(threads, tid, limit=1)[0].next == []
    assert get_thread(threads, tid).status == IDLE


def test_many_state_updates_at_once_each_hold_one_connection(threads, suite, mesh):
    """Each update writes its checkpoint on the connection that holds the thread's lock: 30
    at once (more than the api's pool of 20) all succeed, where two connections per update
    left every pooled one waiting for a second. Each update's audit record commits with it."""
    tids = [create_thread(threads, suite, graph_id="tiny").thread_id for _ in range(30)]
    with ThreadPoolExecutor(max_workers=len(tids)) as pool:
        checkpoints = list(pool.map(lambda tid: update(threads, tid, {"text": tid}, as_node="normalize"), tids))
    assert all(checkpoints) and len(set(checkpoints)) == len(tids)
    for tid in tids[:3]:
        thread = get_thread(threads, tid, values=True)
        assert thread.graph == "tiny" and to_dict(thread.values)["text"] == tid
    review = review_stub(mesh.review_address)
    records = [r for r in list_audit(review, thread_id=tids[0]) if r.action == "thread_state_updated"]
    assert [to_dict(r.details)["checkpoint_id"] for r in records] == [checkpoints[0]]


def test_purge_a_thread_that_never_ran(client, threads, suite):
    for tid in (create_thread(threads, suite).thread_id, create_thread(threads, suite, graph_id="tiny").thread_id):
        if to_dict(get_thread(threads, tid).metadata).get("graph_id"):
            update(threads, tid, {"text": "stored"}, as_node="normalize")
        reply = client.runs.PurgeThread(runpb.PurgeThreadRequest(thread_id=tid, reason="test"), timeout=30)
        assert reply.deleted["threads"] == 1 and reply.deleted["runs"] == 0
        with rpc_error(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND"):
            get_thread(threads, tid)


def test_cli_creates_shows_and_lists_threads(gm, suite):
    tid = str(uuid.uuid4())
    mark = json.dumps({"suite": suite, "cli": True})
    made = gm("threads", "create", tid, "--metadata", mark, "--as", "ann")
    assert made.returncode == 0, made.stderr
    assert "created" in made.stdout and tid in made.stdout and "owner      ann" in made.stdout
    shown = gm("threads", "get", tid, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["thread_id"] == tid and json.loads(shown.stdout)["status"] == "THREAD_STATUS_IDLE"
    listed_out = gm("threads", "list", "--metadata", mark, "--status", "idle")
    assert listed_out.returncode == 0 and listed_out.stdout.split()[:2] == [tid, "idle"]
    taken = gm("threads", "create", tid)
    assert taken.returncode == 1 and "ALREADY_EXISTS (THREAD_EXISTS)" in taken.stderr


def test_every_thread_stores_its_owner_and_old_ones_are_backfilled(client, threads, mesh):
    """Listings narrowed to an owner filter on gm_threads.owner (indexed): a thread a run made
    stores the run's owner, and the migration gives threads from before the column their
    latest run's owner."""
    tid = str(uuid.uuid4())
    run = create_run(client, "tiny", {"text": "owned"}, thread_id=tid)
    wait_status(client, run.run_id, COMPLETED)
    owner = get_thread(threads, tid).owner
    assert owner and owner == client.runs.GetRun(runpb.GetRunRequest(run_id=run.run_id), timeout=10).run.owner
    backfill = [sql for migration in MIGRATIONS for sql in migration.split(";")
                if "UPDATE gm_threads t SET owner" in sql]
    assert len(backfill) == 1, "one migration backfills gm_threads.owner"
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT owner FROM gm_threads WHERE thread_id = %s", (tid,)).fetchone()[0] == owner
        assert conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'gm_threads_owner'").fetchone()
        conn.execute("UPDATE gm_threads SET owner = '' WHERE thread_id = %s", (tid,))  # as before the column
        conn.execute(backfill[0])
        assert conn.execute("SELECT owner FROM gm_threads WHERE thread_id = %s", (tid,)).fetchone()[0] == owner


# -- who sees what (a token mesh of its own) -------------------------------------------------

@pytest.fixture(scope="module")
def token_mesh():
    with private_mesh("threads-auth", auth="token", workers=1) as m:
        yield m


def test_a_submitter_sees_and_changes_only_its_own_threads(token_mesh):
    stubs, channels = {}, []
    for name, roles, graphs in (("sam", ["submitter"], ["*"]), ("sue", ["submitter"], ["*"]),
                                ("rita", ["reviewer"], ["tiny"]), ("olga", ["operator"], ["*"])):
        _, token = token_mesh.create_token(name, roles, graphs, created_by="test_threads_service")
        ch = channel(token_mesh.api_address, token)
        channels.append(ch)
        stubs[name] = thread_service_pb2_grpc.ThreadServiceStub(ch)
    try:
        mark = {"suite": f"auth-{uuid.uuid4().hex[:8]}"}
        sams = stubs["sam"].CreateThread(pb.CreateThreadRequest(metadata=struct(mark)), timeout=10).thread
        sues = stubs["sue"].CreateThread(pb.CreateThreadRequest(metadata=struct(mark), graph="tiny"),
                                         timeout=10).thread
        assert sams.owner == "sam" and sues.graph == "tiny"

        def ids(name):
            request = pb.ListThreadsRequest(metadata=struct(mark))
            return {t.thread_id for t in stubs[name].ListThreads(request, timeout=10).threads}

        assert ids("sam") == {sams.thread_id} and ids("sue") == {sues.thread_id}
        assert ids("rita") == {sues.thread_id}  # a reviewer of tiny: tiny's threads, not graphless ones
        assert ids("olga") == {sams.thread_id, sues.thread_id}
        assert stubs["sue"].CountThreads(pb.CountThreadsRequest(metadata=struct(mark)), timeout=10).count == 1

        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_THREAD"):
            stubs["sue"].GetThread(pb.GetThreadRequest(thread_id=sams.thread_id), timeout=10)
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_THREAD"):
            stubs["sue"].UpdateThread(pb.UpdateThreadRequest(thread_id=sams.thread_id, metadata=struct({"x": 1})),
                                      timeout=10)
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"):  # reviewers read, never write
            stubs["rita"].UpdateThread(pb.UpdateThreadRequest(thread_id=sues.thread_id), timeout=10)
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_THREAD"):
            stubs["sue"].GetThreadHistory(pb.GetThreadHistoryRequest(thread_id=sams.thread_id), timeout=10)
        # Taking another's thread id: refused without showing it, whatever if_exists says.
        with rpc_error(grpc.StatusCode.ALREADY_EXISTS, "THREAD_EXISTS"):
            stubs["sue"].CreateThread(pb.CreateThreadRequest(thread_id=sams.thread_id,
                                                             if_exists=pb.IF_EXISTS_DO_NOTHING), timeout=10)
        stubs["olga"].UpdateThread(pb.UpdateThreadRequest(thread_id=sams.thread_id, metadata=struct({"by": "olga"})),
                                   timeout=10)
        assert stubs["rita"].GetThread(pb.GetThreadRequest(thread_id=sues.thread_id), timeout=10).thread.owner == "sue"

        # Deleting (PurgeThread): a submitter its own thread only; an operator any.
        runs = {name: run_service_pb2_grpc.RunServiceStub(ch) for name, ch in zip(stubs, channels)}
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"):
            runs["sue"].PurgeThread(runpb.PurgeThreadRequest(thread_id=sams.thread_id, reason="not mine"), timeout=10)
        runs["sue"].PurgeThread(runpb.PurgeThreadRequest(thread_id=sues.thread_id, reason="mine"), timeout=30)
        runs["olga"].PurgeThread(runpb.PurgeThreadRequest(thread_id=sams.thread_id, reason="operator"), timeout=30)
        assert ids("olga") == set()
    finally:
        for ch in channels:
            ch.close()

