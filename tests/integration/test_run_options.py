"""LangGraph run options end to end (docs/run-options.md): stream chunks from the chat graph,
config and context reaching its node, static interrupts continued by a run without input,
branching from a checkpoint, Command(update, goto), refused options, and a thread created
before any run taken by its first run."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import nats
import psycopg
import pytest
from google.protobuf import json_format

from graphmesh.bus.connection import server_urls
from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER, run_subject
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import schedule_service_pb2 as schedule_pb
from helpers import (
    CANCELLED,
    COMPLETED,
    QUEUED,
    create_run,
    event_summary,
    get_run,
    kinds,
    new_thread,
    rpc_error,
    stream_events,
    struct,
    thread_values,
    to_dict,
    wait_for,
    wait_status,
)


def say(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def options(**fields) -> run_pb2.RunOptions:
    return json_format.ParseDict(fields, run_pb2.RunOptions())


def run_chat(client, text: str | None = "hello there", **fields) -> tuple[run_pb2.Run, list]:
    """A chat run (no input when text is None) followed to its end: (run, its events)."""
    request = pb.CreateRunRequest(graph="chat", **fields)
    if text is not None:
        request.input.CopyFrom(struct(say(text)))
    run = client.runs.CreateRun(request, timeout=30).run
    events = stream_events(client, run.run_id)
    final = wait_status(client, run.run_id, COMPLETED)
    return final, events


def chunks(events, mode: str | None = None) -> list[tuple[str, list[str], object]]:
    out = [(e.stream_chunk.mode, list(e.stream_chunk.namespace), json_format.MessageToDict(e.stream_chunk.data))
           for e in events if e.WhichOneof("kind") == "stream_chunk"]
    return [c for c in out if mode is None or c[0] == mode]


def state(client, thread_id: str) -> pb.GetThreadStateResponse:
    return client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)


def contents(values: dict) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in values["messages"]]


def test_chat_streams_values_updates_messages_and_custom(client):
    thread = new_thread("chat")
    run, events = run_chat(client, thread_id=thread, options=options(
        stream_modes=["values", "updates", "messages-tuple", "custom"]))
    assert list(run.options.stream_modes) == ["values", "updates", "messages", "custom"]
    summary = event_summary(events)
    # graphmesh's own events are still there, as for any run
    assert kinds(events).count("node_started") == 1 and kinds(events).count("node_finished") == 1, summary
    assert [e.custom.node for e in events if e.WhichOneof("kind") == "custom"] == ["chat"], summary

    tokens = chunks(events, "messages")
    assert len(tokens) > 3, summary  # one chunk per word and per space
    for _, namespace, (message, metadata) in tokens:
        assert namespace == [] and message["type"] == "AIMessageChunk" and metadata["langgraph_node"] == "chat"
    streamed = "".join(message["content"] for _, _, (message, _) in tokens)
    assert streamed == "You said: hello there"
    assert len({message["id"] for _, _, (message, _) in tokens}) == 1

    values = chunks(events, "values")
    assert contents(values[0][2]) == [("human", "hello there")]
    final = values[-1][2]
    assert contents(final) == [("human", "hello there"), ("ai", streamed)]
    assert final == thread_values(client, thread)  # the last values chunk is the thread's state

    assert chunks(events, "custom") == [("custom", [], {"status": "replying", "words": 4})]
    [(_, _, update)] = chunks(events, "updates")
    assert list(update) == ["chat"] and update["chat"]["messages"][0]["content"] == streamed


def test_a_run_without_stream_modes_carries_no_chunks(client):
    run, events = run_chat(client, thread_id=new_thread("plain"))
    assert not run.HasField("options")
    assert chunks(events) == [] and "node_finished" in kinds(events)


def test_debug_tasks_and_checkpoints_chunks(client):
    thread = new_thread("modes")
    _, events = run_chat(client, thread_id=thread, options=options(stream_modes=["debug", "tasks", "checkpoints"]))
    modes = [mode for mode, _, _ in chunks(events)]
    assert {"debug", "tasks", "checkpoints"} <= set(modes)
    tasks = [data for _, _, data in chunks(events, "tasks")]
    assert [t["name"] for t in tasks] == ["chat", "chat"] and "input" in tasks[0] and "result" in tasks[1]
    last = chunks(events, "checkpoints")[-1][2]
    assert last["config"]["configurable"]["checkpoint_id"] == state(client, thread).checkpoint_id
    assert last["next"] == [] and last["metadata"]["source"] == "loop"
    assert {d["type"] for _, _, d in chunks(events, "debug")} >= {"checkpoint", "task", "task_result"}


def test_context_and_configurable_reach_the_node(client):
    thread = new_thread("ctx")
    run, _ = run_chat(client, "hi", thread_id=thread, options=options(
        context={"user_name": "Ann", "not_in_the_schema": 1},
        configurable={"reply_prefix": "> ", "thread_id": "someone-elses"}, tags=["chat-ui"]))
    assert to_dict(run.options.configurable) == {"reply_prefix": "> "}
    assert contents(thread_values(client, thread))[-1] == ("ai", "> Ann, you said: hi")


def test_interrupt_before_stops_and_a_run_without_input_continues(client):
    thread = new_thread("static")
    first, events = run_chat(client, "wait for me", thread_id=thread,
                             options=options(interrupt_before=["chat"], stream_modes=["updates"]))
    assert first.status == COMPLETED  # a static interrupt ends the run; its thread waits
    assert chunks(events, "updates")[-1][2] == {"__interrupt__": []}
    waiting = state(client, thread)
    assert list(waiting.next) == ["chat"] and contents(to_dict(waiting.values)) == [("human", "wait for me")]

    second, _ = run_chat(client, None, thread_id=thread)
    after = state(client, thread)
    assert list(after.next) == [] and contents(to_dict(after.values))[-1] == ("ai", "You said: wait for me")
    assert not second.HasField("options")


def test_interrupt_after_stops_after_the_node(client):
    thread = new_thread("after")
    first = create_run(client, "tiny", {"text": "Two  Words"}, thread_id=thread,
                       options=options(interrupt_after=["normalize"]))
    wait_status(client, first.run_id, COMPLETED)
    stopped = state(client, thread)
    assert list(stopped.next) == ["count"] and to_dict(stopped.values) == {"text": "Two  Words",
                                                                         "normalized": "two words"}
    # a synchronous run without input continues it too (InvokeRun has no options of its own)
    reply = client.runs.InvokeRun(pb.InvokeRunRequest(graph="tiny", thread_id=thread), timeout=30)
    assert reply.run.status == COMPLETED and to_dict(reply.output)["summary"] == "2 words: two words"
    assert list(state(client, thread).next) == []


def test_a_run_branches_from_an_earlier_checkpoint(client):
    thread = new_thread("branch")
    run_chat(client, "first", thread_id=thread)
    fork_point = state(client, thread).checkpoint_id
    run_chat(client, "second", thread_id=thread)
    assert len(thread_values(client, thread)["messages"]) == 4
    run, _ = run_chat(client, "other", thread_id=thread, options=options(checkpoint_id=fork_point))
    assert run.options.checkpoint_id == fork_point
    assert contents(thread_values(client, thread)) == [
        ("human", "first"), ("ai", "You said: first"), ("human", "other"), ("ai", "You said: other")]


def test_command_update_and_goto(client):
    thread = new_thread("cmd")
    run_chat(client, "hello", thread_id=thread)
    run, _ = run_chat(client, None, thread_id=thread, options=options(
        command_update={"messages": [{"role": "user", "content": "via a command"}]}, command_goto=["chat"]))
    assert list(run.options.command_goto) == ["chat"]
    assert contents(thread_values(client, thread))[-2:] == [("human", "via a command"), ("ai", "You said: via a command")]


@pytest.mark.parametrize("fields, code, words", [
    ({"options": {"stream_modes": ["values", "events"]}}, "UNKNOWN_STREAM_MODE", "events"),
    ({"options": {"interrupt_before": ["nope"]}}, "UNKNOWN_NODE", "nope"),
    ({"options": {"command_goto": ["nope"]}}, "UNKNOWN_NODE", "chat"),
    ({"options": {"recursion_limit": 1000}}, "RECURSION_LIMIT_TOO_HIGH", "max_steps 25"),
    ({"options": {"checkpoint_id": "1f1f288c-4862-6711-bfff-c5e3e7dea0e9"}, "input": None}, "THREAD_REQUIRED",
     "thread_id"),
    ({"input": None}, "INPUT_REQUIRED", "input is required"),
    ({"options": {"after_seconds": 8 * 24 * 3600}}, "AFTER_SECONDS_TOO_LONG", "create a schedule"),
], ids=["stream-mode", "interrupt-node", "goto-node", "recursion-limit", "checkpoint-without-thread",
        "no-input-new-thread", "after-seconds"])
def test_bad_options_are_refused(client, fields, code, words):
    request = pb.CreateRunRequest(graph="chat")
    if "input" not in fields:
        request.input.CopyFrom(struct(say("x")))
    if "options" in fields:
        request.options.CopyFrom(options(**fields["options"]))
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, code) as err:
        client.runs.CreateRun(request, timeout=30)
    assert words in err["details"], err["details"]


def test_an_unknown_checkpoint_is_not_found(client):
    thread = new_thread("nocp")
    run_chat(client, "x", thread_id=thread)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND"):
        create_run(client, "chat", say("y"), thread_id=thread,
                   options=options(checkpoint_id="1f1f288c-4862-6711-bfff-c5e3e7dea0e9"))


def test_options_count_in_the_idempotency_key_fingerprint(client):
    key = f"opt-{uuid.uuid4()}"
    thread = new_thread("idem")
    first = create_run(client, "chat", say("x"), thread_id=thread, idempotency_key=key,
                       options=options(stream_modes=["values"]))
    again = create_run(client, "chat", say("x"), thread_id=thread, idempotency_key=key,
                       options=options(stream_modes=["values"]))
    assert again.run_id == first.run_id
    with rpc_error(grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED") as err:
        create_run(client, "chat", say("x"), thread_id=thread, idempotency_key=key,
                   options=options(stream_modes=["updates"]))
    assert "options" in err["details"]
    wait_status(client, first.run_id, COMPLETED)


def test_a_thread_created_before_any_run_is_taken_by_its_first(client, mesh):
    thread = new_thread("early")
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO gm_threads (thread_id, graph, owner) VALUES (%s, NULL, 'carol')", (thread,))
        with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INPUT_REQUIRED"):  # no state to continue yet
            client.runs.CreateRun(pb.CreateRunRequest(graph="chat", thread_id=thread), timeout=30)
        run, _ = run_chat(client, "first words", thread_id=thread)
        row = conn.execute("SELECT graph, owner, active_run_id FROM gm_threads WHERE thread_id = %s",
                           (thread,)).fetchone()
        assert row == ("chat", "carol", None)
        with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_GRAPH_MISMATCH"):
            create_run(client, "tiny", {"text": "x"}, thread_id=thread)
        fresh = new_thread("owned")
        made = create_run(client, "chat", say("x"), thread_id=fresh)
        wait_status(client, made.run_id, COMPLETED)
        owner = conn.execute("SELECT owner FROM gm_threads WHERE thread_id = %s", (fresh,)).fetchone()[0]
        assert owner == made.owner and owner
    assert contents(thread_values(client, thread))[-1] == ("ai", "You said: first words")


# -- after_seconds ---------------------------------------------------------------------------


def test_a_delayed_run_holds_its_thread_and_starts_once_due(client):
    thread = new_thread("later")
    run = create_run(client, "chat", say("later"), thread_id=thread, options=options(after_seconds=2))
    assert run.status == QUEUED and run.options.after_seconds == 2
    # Due two seconds after its creation, on Postgres' clock (both stamped by one statement).
    assert (run.run_after.ToDatetime() - run.created_at.ToDatetime()).total_seconds() == 2
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "THREAD_BUSY"):  # it holds its place on the thread
        create_run(client, "chat", say("now"), thread_id=thread)
    final = wait_status(client, run.run_id, COMPLETED)
    assert final.started_at.ToDatetime() >= final.run_after.ToDatetime()
    assert contents(thread_values(client, thread))[-1] == ("ai", "You said: later")


def test_a_job_delivered_before_the_run_is_due_does_not_start_it(client, mesh):
    """The claim itself waits for run_after: a job that reaches a worker early (published by
    hand here, as a duplicate might be) is dropped, and the run starts later all the same."""
    run = create_run(client, "tiny", {"text": "not yet"}, options=options(after_seconds=600))
    seq = asyncio.run(_publish_job(mesh, run))
    wait_for(lambda: asyncio.run(_acked_through(mesh)) >= seq, 30, message="the early job acked by a worker")
    still = get_run(client, run.run_id)
    assert still.status == QUEUED and not still.HasField("started_at")
    client.runs.CancelRun(pb.CancelRunRequest(run_id=run.run_id, reason="test over"), timeout=30)
    cancelled = wait_status(client, run.run_id, CANCELLED)
    assert not cancelled.HasField("started_at")
    assert "RUNNING" not in " ".join(event_summary(stream_events(client, run.run_id)))


def test_a_schedule_refuses_after_seconds(client):
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE") as err:
        client.schedules.CreateSchedule(schedule_pb.CreateScheduleRequest(
            graph="tiny", cron="0 * * * *", input=struct({"text": "x"}), options=options(after_seconds=5)),
            timeout=30)
    assert "after_seconds" in err["details"]


async def _publish_job(mesh, run) -> int:
    """Publishes the run's job on the work queue; its stream sequence."""
    nc = await nats.connect(servers=server_urls(mesh.nats_url))
    try:
        job = run_pb2.RunJob(run_id=run.run_id, attempt=run.attempt, graph=run.graph,
                             graph_version=run.versions.graph_version)
        ack = await nc.jetstream().publish(run_subject(run.graph, run.versions.graph_version),
                                           job.SerializeToString())
        return ack.seq
    finally:
        await nc.close()


async def _acked_through(mesh) -> int:
    """The stream sequence up to which the workers acknowledged every job (the ack floor)."""
    nc = await nats.connect(servers=server_urls(mesh.nats_url))
    try:
        return (await nc.jetstream().consumer_info(RUNS_STREAM, WORKER_CONSUMER)).ack_floor.stream_seq
    finally:
        await nc.close()
