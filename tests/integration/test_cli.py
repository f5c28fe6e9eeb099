"""`graphmesh runs create|get|list|stream` as a script would use it, against the real mesh."""

from __future__ import annotations

import json
import subprocess

from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, FAILED, WAITING, new_thread, struct, wait_status


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_create_stream_get_list(gm, client):
    thread = new_thread("cli")
    created = json.loads(_ok(gm("runs", "create", "tiny", "--input", '{"text":"hi there"}', "--thread", thread,
                                "--metadata", "who=cli", "--json")).stdout)
    run_id = created["run_id"]
    assert created["graph"] == "tiny" and created["thread_id"] == thread
    assert created["status"] == "RUN_STATUS_QUEUED" and created["metadata"] == {"who": "cli"}

    streamed = _ok(gm("runs", "stream", run_id))
    lines = streamed.stdout.splitlines()
    assert lines[0].startswith("#1") and "QUEUED" in lines[0]
    assert "COMPLETED" in lines[-1]
    for node in ("normalize", "count", "summarize"):
        assert node in streamed.stdout
    assert "COMPLETED" in streamed.stderr  # "run ... ended COMPLETED"

    as_json = [json.loads(line) for line in _ok(gm("runs", "stream", run_id, "--json")).stdout.splitlines()]
    assert [int(e["sequence"]) for e in as_json] == list(range(1, len(as_json) + 1))
    assert as_json[-1]["status_changed"]["status"] == "RUN_STATUS_COMPLETED"

    resumed = [json.loads(line) for line in _ok(gm("runs", "stream", run_id, "--after", "3", "--json")).stdout.splitlines()]
    assert resumed == as_json[3:]

    got = json.loads(_ok(gm("runs", "get", run_id, "--json")).stdout)
    assert got["run_id"] == run_id and got["status"] == "RUN_STATUS_COMPLETED"
    assert got["versions"]["graph_version"] == "1"
    readable = _ok(gm("runs", "get", run_id)).stdout
    assert run_id in readable and "COMPLETED" in readable and "tiny" in readable

    listed = json.loads(_ok(gm("runs", "list", "--graph", "tiny", "--json")).stdout)
    assert run_id in [r["run_id"] for r in listed["runs"]]
    assert all(r["graph"] == "tiny" for r in listed["runs"])
    by_thread = json.loads(_ok(gm("runs", "list", "--thread", thread, "--status", "completed", "--json")).stdout)
    assert [r["run_id"] for r in by_thread["runs"]] == [run_id]
    table = _ok(gm("runs", "list", "--thread", thread)).stdout
    assert run_id in table and "COMPLETED" in table


def test_create_with_stream_shows_progress(gm, client):
    result = _ok(gm("runs", "create", "research_assistant", "--input", '{"question":"grpc","delay_seconds":0.2}',
                    "--stream"))
    assert "%" in result.stdout  # the progress display
    assert "write_report" in result.stdout and "COMPLETED" in result.stdout


def test_stream_of_failed_run_exits_1(gm, client):
    created = json.loads(_ok(gm("runs", "create", "research_assistant", "--input",
                                '{"question":"grpc","delay_seconds":0,"fail_first_attempts":10}', "--json")).stdout)
    run = wait_status(client, created["run_id"], {COMPLETED, FAILED})
    assert run.status == FAILED
    result = gm("runs", "stream", created["run_id"])
    assert result.returncode == 1, result
    assert "FAILED" in result.stdout + result.stderr


def test_unknown_graph_exits_1_readably(gm):
    result = gm("runs", "create", "no_such_graph", "--input", '{"text":"hi"}')
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "no_such_graph" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_run_exits_1_readably(gm):
    result = gm("runs", "get", "00000000-0000-0000-0000-000000000000")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "Traceback" not in result.stderr


def test_bad_input_exits_1_readably(gm):
    schema = gm("runs", "create", "tiny", "--input", '{"text": 5}')
    assert schema.returncode == 1 and "INVALID_ARGUMENT" in schema.stderr and "text" in schema.stderr
    not_object = gm("runs", "create", "tiny", "--input", "[1, 2]")
    assert not_object.returncode != 0 and "JSON object" in not_object.stderr
    assert "Traceback" not in not_object.stderr


def test_input_not_json_exits_readably(gm):
    result = gm("runs", "create", "tiny", "--input", "{text: hi}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "JSON" in result.stderr or "json" in result.stderr


def test_cancel_waiting_run(gm, client):
    run = client.runs.CreateRun(pb.CreateRunRequest(
        graph="approval_workflow", input=struct({"action": "refund", "target": "order-9", "amount": 3}))).run
    wait_status(client, run.run_id, WAITING)
    cancelled = json.loads(_ok(gm("runs", "cancel", run.run_id, "--reason", "customer withdrew",
                                  "--as", "operator-ann", "--json")).stdout)
    assert cancelled["status"] == "RUN_STATUS_CANCELLED"
    assert cancelled["error"] == {"code": "CANCELLED", "message": "customer withdrew"}
    again = json.loads(_ok(gm("runs", "cancel", run.run_id, "--json")).stdout)
    assert again["status"] == "RUN_STATUS_CANCELLED" and again["updated_at"] == cancelled["updated_at"]

    done = client.runs.CreateRun(pb.CreateRunRequest(graph="tiny", input=struct({"text": "x"}))).run
    wait_status(client, done.run_id, COMPLETED)
    refused = gm("runs", "cancel", done.run_id)
    assert refused.returncode == 1 and "FAILED_PRECONDITION (RUN_FINISHED)" in refused.stderr


# -- a run's result: runs get, threads state, runs invoke ----------------------------------------


def test_get_shows_the_output_until_the_thread_moves_on(gm, client):
    thread = new_thread("cli-output")
    first = json.loads(_ok(gm("runs", "create", "tiny", "--input", '{"text":"One two THREE"}', "--thread", thread,
                              "--stream", "--json")).stdout.splitlines()[0])["run_id"]
    got = json.loads(_ok(gm("runs", "get", first, "--json")).stdout)
    assert got["output"] == {"text": "One two THREE", "normalized": "one two three", "word_count": 3,
                             "char_count": 13, "summary": "3 words: one two three"}
    readable = _ok(gm("runs", "get", first)).stdout
    assert "output" in readable and '"summary": "3 words: one two three"' in readable

    # A later run on the same thread: the first run's output is no longer the thread's state.
    second = json.loads(_ok(gm("runs", "create", "tiny", "--input", '{"text":"four"}', "--thread", thread,
                               "--stream", "--json")).stdout.splitlines()[0])["run_id"]
    moved = json.loads(_ok(gm("runs", "get", first, "--json")).stdout)
    assert moved["output"] is None and f"written by run {second}" in moved["output_note"]
    readable = _ok(gm("runs", "get", first)).stdout
    assert "the thread has moved on" in readable and f"graphmesh threads state {thread}" in readable
    assert json.loads(_ok(gm("runs", "get", second, "--json")).stdout)["output"]["summary"] == "1 words: four"

    # A run that did not complete shows no output.
    failed = json.loads(_ok(gm("runs", "create", "research_assistant", "--input", '{"question":"grpc","delay_seconds":0,"fail_first_attempts":10}',
                               "--json")).stdout)["run_id"]
    wait_status(client, failed, {FAILED, COMPLETED})
    assert "output" not in json.loads(_ok(gm("runs", "get", failed, "--json")).stdout)


def test_threads_state(gm, client):
    thread = new_thread("cli-state")
    run_id = json.loads(_ok(gm("runs", "create", "tiny", "--input", '{"text":"a b"}', "--thread", thread,
                               "--json")).stdout)["run_id"]
    wait_status(client, run_id, COMPLETED)
    state = json.loads(_ok(gm("threads", "state", thread, "--json")).stdout)
    assert state["thread_id"] == thread and state["values"]["summary"] == "2 words: a b"
    assert state["checkpoint_metadata"]["gm_run_id"] == run_id and state.get("next", []) == []
    readable = _ok(gm("threads", "state", thread)).stdout
    assert f"checkpoint {state['checkpoint_id']}" in readable
    assert "written by tiny@1" in readable and f"run        {run_id}" in readable
    assert "next       - (at rest)" in readable and "active run -" in readable
    assert '"summary": "2 words: a b"' in readable

    # A thread waiting for approval: its next node and the run that holds it.
    waiting = json.loads(_ok(gm("runs", "create", "approval_workflow", "--input",
                                '{"action":"refund","target":"order-1","amount":5}', "--json")).stdout)
    wait_status(client, waiting["run_id"], WAITING)
    held = _ok(gm("threads", "state", waiting["thread_id"])).stdout
    assert f"active run {waiting['run_id']}" in held and "next       - (at rest)" not in held

    unknown = gm("threads", "state", new_thread("cli-none"))
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


def test_invoke_a_sync_graph(gm):
    done = _ok(gm("runs", "invoke", "tiny", "--input", '{"text":"Sync   call"}', "--timeout", "30"))
    assert "COMPLETED" in done.stdout and '"summary": "2 words: sync call"' in done.stdout
    thread = new_thread("cli-invoke")
    reply = json.loads(_ok(gm("runs", "invoke", "tiny", "--input", '{"text":"x y z"}', "--thread", thread,
                              "--json")).stdout)
    assert reply["run"]["status"] == "RUN_STATUS_COMPLETED" and reply["run"]["thread_id"] == thread
    assert reply["output"]["word_count"] == 3

    refused = gm("runs", "invoke", "research_assistant", "--input", '{"question":"x"}')
    assert refused.returncode == 1 and "NOT_SYNC_ELIGIBLE" in refused.stderr
    bad = gm("runs", "invoke", "tiny", "--input", '{"text":"x"}', "--timeout", "0")
    assert bad.returncode == 2 and "--timeout" in bad.stderr
