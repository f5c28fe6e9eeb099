"""Run lifecycle end to end through the real api, workers, Postgres and JetStream."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from graphmesh.client import api_client, worker_stub
from graphmesh.rpc.errors import error_code
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import (
    COMPLETED,
    QUEUED,
    RUNNING,
    WAITING,
    assert_gap_free,
    create_run,
    event_summary,
    get_run,
    kinds,
    list_all_runs,
    new_thread,
    rpc_error,
    statuses_of,
    stream_events,
    to_dict,
    wait_for,
    wait_resting,
    wait_status,
)

TINY_NODES = ["normalize", "count", "summarize"]
RESEARCH_NODES = ["plan", "search", "rank", "summarize", "write_report"]
RESEARCH_VERSIONS = {
    "graph_version": "1", "state_schema_version": "1", "prompt_version": "research-v1",
    "model_route": "none", "tool_version": "corpus-1",
}
TINY_VERSIONS = {
    "graph_version": "1", "state_schema_version": "1", "prompt_version": "none",
    "model_route": "none", "tool_version": "1",
}


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


def thread_state(client, thread_id: str) -> pb.GetThreadStateResponse:
    return client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)


def versions_dict(run: run_pb2.Run) -> dict:
    v = run.versions
    return {f: getattr(v, f) for f in RESEARCH_VERSIONS}


def assert_node_pairs(events, nodes: list[str]) -> None:
    """node_started/node_finished come in matching pairs (by task id), in graph order, and
    custom events sit inside their node's pair."""
    body = [e for e in events if e.WhichOneof("kind") in ("node_started", "node_finished", "custom")]
    started = [e.node_started.node for e in body if e.WhichOneof("kind") == "node_started"]
    finished = [e.node_finished.node for e in body if e.WhichOneof("kind") == "node_finished"]
    assert started == nodes, event_summary(events)
    assert finished == nodes, event_summary(events)
    open_task = None
    for e in body:
        kind = e.WhichOneof("kind")
        if kind == "node_started":
            assert open_task is None, f"{e.node_started.node} started inside another node: {event_summary(events)}"
            open_task = (e.node_started.node, e.node_started.task_id)
            assert e.node_started.task_id
        elif kind == "node_finished":
            assert open_task == (e.node_finished.node, e.node_finished.task_id), event_summary(events)
            open_task = None
        else:
            assert open_task is not None, f"custom event outside a node: {event_summary(events)}"
            assert e.custom.node == open_task[0], f"custom event attributed to {e.custom.node!r}, inside {open_task[0]}"
    assert open_task is None


def assert_lifecycle_envelope(events, run_id: str, terminal: int = COMPLETED) -> None:
    assert events, "no events"
    assert_gap_free(events)
    assert all(e.run_id == run_id for e in events)
    assert kinds(events)[:2] == ["status_changed", "status_changed"], event_summary(events)
    assert events[0].status_changed.status == QUEUED
    assert events[1].status_changed.status == RUNNING
    assert events[-1].WhichOneof("kind") == "status_changed", event_summary(events)
    assert events[-1].status_changed.status == terminal
    # exactly three status changes for a straight run: QUEUED, RUNNING, terminal
    assert len(statuses_of(events)) == 3, statuses_of(events)
    assert all(e.HasField("time") and e.time.ToDatetime().year >= 2026 for e in events)


# -- lifecycle ---------------------------------------------------------------------


def test_tiny_lifecycle(client):
    thread = new_thread("tiny")
    run = create_run(client, "tiny", {"text": "  Hello   Graph MESH  world "}, thread_id=thread,
                     metadata={"purpose": "lifecycle"})
    assert run.run_id and run.thread_id == thread and run.graph == "tiny"
    assert run.status == QUEUED and run.attempt == 1
    assert dict(run.metadata) == {"purpose": "lifecycle"}
    assert versions_dict(run) == TINY_VERSIONS
    assert run.HasField("created_at")

    events = stream_events(client, run.run_id)
    assert_lifecycle_envelope(events, run.run_id)
    assert_node_pairs(events, TINY_NODES)
    finished = {e.node_finished.node: to_dict(e.node_finished.update)
                for e in events if e.WhichOneof("kind") == "node_finished"}
    assert finished["normalize"] == {"normalized": "hello graph mesh world"}
    assert finished["count"] == {"word_count": 4, "char_count": 22}

    done = get_run(client, run.run_id)
    assert done.status == COMPLETED and not done.error.code
    assert done.HasField("started_at") and done.HasField("finished_at")
    assert done.created_at.ToDatetime() <= done.started_at.ToDatetime() <= done.finished_at.ToDatetime()

    state = thread_state(client, thread)
    values = to_dict(state.values)
    assert values["normalized"] == "hello graph mesh world"
    assert values["word_count"] == 4 and values["summary"] == "4 words: hello graph mesh world"
    assert list(state.next) == [] and state.checkpoint_id and not state.active_run_id
    meta = to_dict(state.checkpoint_metadata)
    assert {k: meta.get(k) for k in TINY_VERSIONS} == TINY_VERSIONS
    assert meta.get("gm_run_id") == run.run_id


def test_research_lifecycle_with_progress(client):
    thread = new_thread("research")
    question = "How do LangGraph checkpoints work with Postgres?"
    run = create_run(client, "research_assistant", {"question": question, "delay_seconds": 0.3}, thread_id=thread)
    assert versions_dict(run) == RESEARCH_VERSIONS

    events = stream_events(client, run.run_id)
    assert_lifecycle_envelope(events, run.run_id)
    assert_node_pairs(events, RESEARCH_NODES)
    custom = [to_dict(e.custom.data) for e in events if e.WhichOneof("kind") == "custom"]
    assert len(custom) >= len(RESEARCH_NODES), custom
    progress = [c["progress"] for c in custom]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert progress[-1] == 1.0
    assert [c["stage"] for c in custom][0] == "plan" and custom[-1]["stage"] == "write_report"

    done = get_run(client, run.run_id)
    assert done.status == COMPLETED
    state = thread_state(client, thread)
    values = to_dict(state.values)
    assert values["question"] == question
    assert values["report"].startswith(f"# {question}")
    assert values["sources"] and set(values["sources"]) <= {"lg-1", "lg-2", "pg-1"}
    meta = to_dict(state.checkpoint_metadata)
    assert {k: meta.get(k) for k in RESEARCH_VERSIONS} == RESEARCH_VERSIONS
    assert meta.get("gm_run_id") == run.run_id


def _stream_until(client, run_id: str, stop) -> list:
    call = client.runs.StreamRun(pb.StreamRunRequest(run_id=run_id), timeout=60)
    events = []
    try:
        for response in call:
            events.append(response.event)
            if stop(response.event):
                break
    finally:
        call.cancel()
    return events


def test_approval_workflow_waits_for_approval(client):
    thread = new_thread("approval")
    run = create_run(client, "approval_workflow", {"action": "refund", "target": "acct-42", "amount": 12.5},
                     thread_id=thread)
    rested = wait_resting(client, run.run_id)
    assert rested.status == WAITING, rested
    assert not rested.HasField("finished_at") or rested.finished_at.seconds == 0

    events = _stream_until(client, run.run_id, lambda e: e.WhichOneof("kind") == "status_changed"
                           and e.status_changed.status == WAITING)
    assert_gap_free(events)
    assert events[-1].status_changed.status == WAITING, event_summary(events)
    requested = [e.approval_requested for e in events if e.WhichOneof("kind") == "approval_requested"]
    assert len(requested) == 1, event_summary(events)
    payload = to_dict(requested[0].payload)
    expected = {
        "kind": "approval",
        "node": "apply_change",
        "summary": "Refund 12.50 to acct-42",
        "proposed_change": {"action": "refund", "target": "acct-42", "reason": "", "amount": 12.5},
        "requested_by": "",
    }
    assert payload == expected
    assert requested[0].interrupt_id
    assert requested[0].node == "review"
    started = [e.node_started.node for e in events if e.WhichOneof("kind") == "node_started"]
    assert started[:2] == ["prepare", "review"] and "apply_change" not in started

    state = thread_state(client, thread)
    assert list(state.next) == ["review"]
    assert to_dict(state.values)["proposed_change"] == expected["proposed_change"]


# -- stream resumption ---------------------------------------------------------------


def test_stream_resume_from_sequence(client):
    run = create_run(client, "research_assistant", {"question": "grpc deadlines and nats", "delay_seconds": 1.0},
                     thread_id=new_thread("resume"))
    k = 4
    first = stream_events(client, run.run_id, limit=k)
    assert [e.sequence for e in first] == [1, 2, 3, 4]
    rest = stream_events(client, run.run_id, after=k)
    combined = first + rest
    assert_gap_free(combined)
    assert combined[-1].status_changed.status == COMPLETED
    assert [e.sequence for e in rest][0] == k + 1

    full = stream_events(client, run.run_id)
    assert full == combined

    # After the run has finished: the same resumption gives exactly the same rest.
    again = stream_events(client, run.run_id, after=k)
    assert again == rest
    # Resuming from the middle of the tail, and after the last event.
    mid = len(full) - 2
    assert [e.sequence for e in stream_events(client, run.run_id, after=mid)] == [mid + 1, mid + 2]
    assert stream_events(client, run.run_id, after=len(full)) == []


def test_stream_resume_reconnecting_repeatedly(client):
    """A client that reconnects after every event still sees every event exactly once."""
    run = create_run(client, "research_assistant", {"question": "postgres nats", "delay_seconds": 0.5},
                     thread_id=new_thread("reconnect"))
    seen = []
    last = 0
    for _ in range(200):
        batch = stream_events(client, run.run_id, after=last, limit=1)
        if not batch:
            break
        seen.extend(batch)
        last = batch[-1].sequence
    assert_gap_free(seen)
    assert seen[-1].status_changed.status == COMPLETED


# -- idempotency -----------------------------------------------------------------------


def test_idempotency_key_returns_same_run(client):
    thread = new_thread("idem")
    key = f"key-{thread}"
    first = create_run(client, "tiny", {"text": "once"}, thread_id=thread, idempotency_key=key)
    second = create_run(client, "tiny", {"text": "once"}, thread_id=thread, idempotency_key=key)
    assert second.run_id == first.run_id
    assert first.idempotency_key == key
    wait_status(client, first.run_id, COMPLETED)
    # Once the first has completed the key still maps to it; no new run executes.
    third = create_run(client, "tiny", {"text": "once"}, thread_id=thread, idempotency_key=key)
    assert third.run_id == first.run_id and third.status == COMPLETED
    runs = list_all_runs(client, thread_id=thread)
    assert [r.run_id for r in runs] == [first.run_id]
    events = stream_events(client, first.run_id)
    assert len(statuses_of(events)) == 3 and kinds(events).count("node_started") == 3


@pytest.mark.parametrize("same_thread", [False, True], ids=["new-thread", "same-thread"])
def test_idempotency_key_concurrent(client, same_thread):
    """8 clients send the same request (same key) at once: one run, everyone gets its id."""
    thread = new_thread("idem-conc") if same_thread else ""
    key = f"conc-{new_thread()}"
    n = 8
    barrier = threading.Barrier(n)

    def call(_):
        barrier.wait()
        try:
            return create_run(client, "research_assistant", {"question": "grpc", "delay_seconds": 0.2},
                              thread_id=thread, idempotency_key=key).run_id
        except grpc.RpcError as err:
            return f"error {err.code().name} {error_code(err)}: {err.details()}"

    with ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(call, range(n)))
    assert len(set(ids)) == 1, ids
    run_id = ids[0]
    done = wait_status(client, run_id, COMPLETED)
    runs = list_all_runs(client, thread_id=done.thread_id)
    assert [r.run_id for r in runs] == [run_id]
    # Executed once: one RUNNING, one set of nodes.
    events = stream_events(client, run_id)
    assert statuses_of(events) == ["RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]
    assert kinds(events).count("node_started") == len(RESEARCH_NODES)


# -- ListRuns ------------------------------------------------------------------------------


def test_list_runs_filters_and_paging(client):
    thread = new_thread("list")
    mine = []
    for i in range(3):  # one thread, one run at a time
        run = create_run(client, "tiny", {"text": f"run {i}"}, thread_id=thread)
        wait_status(client, run.run_id, COMPLETED)
        mine.append(run.run_id)
    others = [create_run(client, "tiny", {"text": f"other {i}"}, thread_id=new_thread("list-other")).run_id
              for i in range(4)]
    for run_id in others:
        wait_status(client, run_id, COMPLETED)
    waiting = create_run(client, "approval_workflow", {"action": "deploy", "target": "svc"},
                         thread_id=new_thread("list-wait"))
    wait_status(client, waiting.run_id, WAITING)

    by_thread = list_all_runs(client, thread_id=thread)
    assert [r.run_id for r in by_thread] == list(reversed(mine))  # newest first

    tiny_all = list_all_runs(client, page_size=1000, graph="tiny")
    assert all(r.graph == "tiny" for r in tiny_all)
    ids = [r.run_id for r in tiny_all]
    assert set(mine + others) <= set(ids)
    assert waiting.run_id not in ids
    created = [(r.created_at.ToDatetime(), r.run_id) for r in tiny_all]
    assert created == sorted(created, reverse=True)

    # Paging with small pages covers the same runs exactly once, in the same order.
    for size in (1, 2, 3):
        paged = list_all_runs(client, page_size=size, graph="tiny")
        assert [r.run_id for r in paged] == ids, f"page_size={size}"

    completed = list_all_runs(client, statuses=[COMPLETED])
    assert all(r.status == COMPLETED for r in completed)
    assert set(mine + others) <= {r.run_id for r in completed}
    assert waiting.run_id not in {r.run_id for r in completed}
    waiting_runs = list_all_runs(client, statuses=[WAITING], graph="approval_workflow")
    assert waiting.run_id in {r.run_id for r in waiting_runs}
    assert all(r.status == WAITING and r.graph == "approval_workflow" for r in waiting_runs)
    both = list_all_runs(client, statuses=[WAITING, COMPLETED], thread_id=thread)
    assert {r.run_id for r in both} == set(mine)
    assert list_all_runs(client, statuses=[RUNNING], thread_id=thread) == []
    assert list_all_runs(client, graph="tiny", thread_id=waiting.thread_id) == []


# -- workers ---------------------------------------------------------------------------------


def test_worker_status(mesh, client):
    expected_graphs = {("tiny", "1"), ("research_assistant", "1"), ("approval_workflow", "1")}
    stubs = [worker_stub(addr) for addr in mesh.worker_addresses]
    ids = set()
    for stub in stubs:
        status = stub.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10)
        assert status.capacity == 8
        assert not status.draining
        assert status.worker_id
        ids.add(status.worker_id)
        assert expected_graphs <= {(g.graph, g.graph_version) for g in status.graphs}
    assert len(ids) == len(stubs)

    run = create_run(client, "research_assistant", {"question": "langgraph", "delay_seconds": 3.0},
                     thread_id=new_thread("worker"))

    def active_on():
        holders = []
        for stub in stubs:
            for a in stub.GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=10).active_runs:
                if a.run_id == run.run_id:
                    holders.append(a)
        return holders

    holders = wait_for(active_on, 30, message="the run to show up as active on a worker")
    assert len(holders) == 1
    active = holders[0]
    assert active.graph == "research_assistant" and active.graph_version == "1"
    assert active.thread_id == run.thread_id and active.HasField("started_at")
    assert get_run(client, run.run_id).status == RUNNING
    wait_status(client, run.run_id, COMPLETED)
    wait_for(lambda: not active_on(), 10, message="the finished run to leave the workers' active lists")


# -- threads -----------------------------------------------------------------------------------


def test_busy_thread_rejects_second_run(client):
    thread = new_thread("busy")
    first = create_run(client, "research_assistant", {"question": "grpc", "delay_seconds": 2.0}, thread_id=thread)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_BUSY") as err:
        create_run(client, "research_assistant", {"question": "nats"}, thread_id=thread)
    assert first.run_id in err["details"]
    # Explicit REJECT behaves the same.
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_BUSY") as err:
        create_run(client, "research_assistant", {"question": "nats"}, thread_id=thread,
                   multitask_strategy=run_pb2.MULTITASK_STRATEGY_REJECT)
    assert first.run_id in err["details"]
    wait_status(client, first.run_id, COMPLETED)
    assert [r.run_id for r in list_all_runs(client, thread_id=thread)] == [first.run_id]
    # Once it ended, the thread is free again.
    second = create_run(client, "research_assistant", {"question": "nats", "delay_seconds": 0}, thread_id=thread)
    wait_status(client, second.run_id, COMPLETED)


def test_enqueue_waits_for_active_run(client):
    thread = new_thread("enqueue")
    first = create_run(client, "research_assistant", {"question": "grpc", "delay_seconds": 1.0}, thread_id=thread)
    second = create_run(client, "research_assistant", {"question": "nats", "delay_seconds": 0.2}, thread_id=thread,
                        multitask_strategy=run_pb2.MULTITASK_STRATEGY_ENQUEUE)
    assert second.status == QUEUED and second.run_id != first.run_id
    assert second.multitask_strategy == run_pb2.MULTITASK_STRATEGY_ENQUEUE
    a = wait_status(client, first.run_id, COMPLETED)
    b = wait_status(client, second.run_id, COMPLETED)
    assert b.started_at.ToDatetime() >= a.finished_at.ToDatetime(), (a, b)
    events = stream_events(client, second.run_id)
    assert_lifecycle_envelope(events, second.run_id)
    state = thread_state(client, thread)
    assert to_dict(state.values)["question"] == "nats"
    assert to_dict(state.checkpoint_metadata)["gm_run_id"] == second.run_id


def test_concurrent_create_on_idle_thread_one_wins(client):
    thread = new_thread("race")
    n = 8
    barrier = threading.Barrier(n)

    def call(_):
        barrier.wait()
        try:
            return ("ok", create_run(client, "research_assistant", {"question": "grpc", "delay_seconds": 2.0},
                                     thread_id=thread).run_id)
        except grpc.RpcError as err:
            return (err.code().name, error_code(err), err.details())

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    winners = [r[1] for r in results if r[0] == "ok"]
    losers = [r for r in results if r[0] != "ok"]
    assert len(winners) == 1, results
    assert all(r[0] == "FAILED_PRECONDITION" and r[1] == "THREAD_BUSY" and winners[0] in r[2] for r in losers), results
    wait_status(client, winners[0], COMPLETED)
    assert [r.run_id for r in list_all_runs(client, thread_id=thread)] == winners


def test_second_run_continues_thread_state(client):
    thread = new_thread("continue")
    first = create_run(client, "research_assistant",
                       {"question": "grpc deadlines", "delay_seconds": 0, "max_results": 1}, thread_id=thread)
    wait_status(client, first.run_id, COMPLETED)
    before = thread_state(client, thread)
    assert len(to_dict(before.values)["ranked"]) == 1
    # The second run does not pass max_results: it sees the thread's earlier value (1), not the default (3).
    second = create_run(client, "research_assistant", {"question": "langgraph checkpoint postgres"},
                        thread_id=thread)
    wait_status(client, second.run_id, COMPLETED)
    after = thread_state(client, thread)
    values = to_dict(after.values)
    assert values["question"] == "langgraph checkpoint postgres"
    assert values["max_results"] == 1 and values["delay_seconds"] == 0
    assert len(values["ranked"]) == 1 and len(values["sources"]) == 1
    assert after.checkpoint_id != before.checkpoint_id
    assert to_dict(after.checkpoint_metadata)["gm_run_id"] == second.run_id
    assert [r.run_id for r in list_all_runs(client, thread_id=thread)] == [second.run_id, first.run_id]


def test_thread_of_another_graph_is_refused(client):
    thread = new_thread("mismatch")
    run = create_run(client, "tiny", {"text": "a"}, thread_id=thread)
    wait_status(client, run.run_id, COMPLETED)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION):
        create_run(client, "research_assistant", {"question": "grpc"}, thread_id=thread)


def test_stream_of_finished_run_after_its_last_event_ends_empty(client):
    run = create_run(client, "tiny", {"text": "seen it all"})
    events = stream_events(client, run.run_id)
    assert events[-1].status_changed.status == COMPLETED
    assert stream_events(client, run.run_id, after=events[-1].sequence) == []
    assert [e.sequence for e in stream_events(client, run.run_id, after=events[-2].sequence)] == [events[-1].sequence]
