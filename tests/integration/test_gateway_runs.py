"""The runs endpoints of the LangGraph HTTP API gateway, driven by langgraph-sdk (async and
sync) against a real mesh with two gateway replicas: create + join, wait, stream (values,
updates, messages-tuple, custom on the chat graph: its tokens add up to the reply),
stateless runs, cancel, list / get / delete, after_seconds, multitask reject, an unknown assistant,
interrupts resumed with Command(resume=...) through the review tier, Last-Event-ID joins
with no gap and no duplicate, and a replica SIGKILLed mid-stream with the stream picked up
on the other replica."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any, Iterator

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.sse import SSEDecoder

from graphmesh.client import api_client, review_stub
from graphmesh.mesh import Mesh
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2
from helpers import list_audit, private_mesh, wait_for

HTTP_TIMEOUT = 60.0  # bounds a hung call; not a timing assertion
RESEARCH = "research_assistant"
CHAT_MODES = ["values", "updates", "messages-tuple", "custom"]
HEARTBEAT_SECONDS = 0.2


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with private_mesh("gateway-runs", workers=1, worker_concurrency=16, gateway_port=0, gateway_replicas=2,
                      extra_env={"GRAPHMESH_GATEWAY_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}) as m:
        yield m


@pytest.fixture(scope="module")
def url(mesh) -> str:
    return mesh.gateway_url_of("gateway")


@pytest.fixture
def client(url):
    return get_client(url=url, api_key=None, timeout=HTTP_TIMEOUT)


@pytest.fixture(scope="module")
def sync_client(url):
    with get_sync_client(url=url, api_key=None, timeout=HTTP_TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def review(mesh):
    return review_stub(mesh.review_address, token="")


def run(coro):
    return asyncio.run(coro)


def chat_input(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def collect(parts) -> list:
    return [p async for p in parts]


# -- background runs, join, reads -------------------------------------------------------------


def test_create_join_get_list_and_delete_with_the_sync_client(sync_client):
    thread = sync_client.threads.create()
    tid = thread["thread_id"]
    created = sync_client.runs.create(tid, "chat", input=chat_input("hi there"), metadata={"source": "test", "n": 3})
    assert created["status"] == "pending" and created["thread_id"] == tid
    assert created["metadata"]["source"] == "test" and created["metadata"]["n"] == "3"  # graphmesh keeps strings
    result = sync_client.runs.join(tid, created["run_id"])
    assert [m["type"] for m in result["messages"]] == ["human", "ai"]
    assert result["messages"][-1]["content"] == "You said: hi there"

    got = sync_client.runs.get(tid, created["run_id"])
    assert got["status"] == "success" and got["assistant_id"] == created["assistant_id"]
    assert set(got) >= {"run_id", "thread_id", "assistant_id", "created_at", "updated_at", "status", "metadata",
                        "kwargs", "multitask_strategy"}
    assert got["multitask_strategy"] == "enqueue"  # the reference's default
    second = sync_client.runs.create(tid, "chat", input=chat_input("again"))
    sync_client.runs.join(tid, second["run_id"])
    listed = sync_client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [second["run_id"], created["run_id"]]  # newest first
    assert [r["run_id"] for r in sync_client.runs.list(tid, limit=1, offset=1)] == [created["run_id"]]
    assert sync_client.runs.list(tid, status="error") == []

    # The run wrote the graph and the assistant into its thread's metadata, as the reference.
    metadata = sync_client.threads.get(tid)["metadata"]
    assert metadata["graph_id"] == "chat" and metadata["assistant_id"] == created["assistant_id"]

    with pytest.raises(httpx.HTTPStatusError) as caught:
        sync_client.runs.get(str(uuid.uuid4()), created["run_id"])  # not that thread's run
    assert caught.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as caught:
        sync_client.runs.delete(str(uuid.uuid4()), created["run_id"])
    assert caught.value.response.status_code == 404

    # Deleting the first run: it is gone from the thread's runs; the thread keeps its state
    # (the run's checkpoints are the thread's history, which the second run continued from).
    values = sync_client.threads.get_state(tid)["values"]
    sync_client.runs.delete(tid, created["run_id"])
    with pytest.raises(httpx.HTTPStatusError) as caught:
        sync_client.runs.get(tid, created["run_id"])
    assert caught.value.response.status_code == 404
    assert [r["run_id"] for r in sync_client.runs.list(tid)] == [second["run_id"]]
    assert sync_client.threads.get_state(tid)["values"] == values
    third = sync_client.runs.wait(tid, "chat", input=chat_input("still here"))
    assert [m["content"] for m in third["messages"] if m["type"] == "human"] == ["hi there", "again", "still here"]


def test_unknown_assistant_and_thread_are_404(client):
    async def go():
        thread = await client.threads.create()
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.create(thread["thread_id"], "no-such-graph", input={})
        assert caught.value.response.status_code == 404
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.wait(str(uuid.uuid4()), "chat", input=chat_input("x"))  # if_not_exists: reject
        assert caught.value.response.status_code == 404
        tid = str(uuid.uuid4())
        result = await client.runs.wait(tid, "chat", input=chat_input("made"), if_not_exists="create")
        assert result["messages"][-1]["content"] == "You said: made"
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.create(tid, "chat", input=chat_input("x"), after_seconds=8 * 24 * 3600)
        assert caught.value.response.status_code == 422 and "after_seconds" in caught.value.response.text
    run(go())


def test_a_run_created_with_after_seconds_is_pending_until_due(client, mesh):
    async def go():
        tid = (await client.threads.create())["thread_id"]
        created = await client.runs.create(tid, "chat", input=chat_input("later"), after_seconds=1.5)
        assert created["status"] == "pending"
        # It holds its place on the thread: a run that rejects a busy thread is refused.
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.create(tid, "chat", input=chat_input("now"), multitask_strategy="reject")
        assert caught.value.response.status_code == 409
        result = await client.runs.join(tid, created["run_id"])
        assert result["messages"][-1]["content"] == "You said: later"
        # On graphmesh's record: due 2 s (rounded up) after it was created, and not started before.
        recorded = api_client(mesh.api_address).runs.GetRun(run_service_pb2.GetRunRequest(run_id=created["run_id"]),
                                                            timeout=10).run
        assert (recorded.run_after.ToDatetime() - recorded.created_at.ToDatetime()).total_seconds() == 2
        assert recorded.started_at.ToDatetime() >= recorded.run_after.ToDatetime()
        # A run in progress cannot be deleted: 409 (cancel it first).
        waiting = await client.runs.create(tid, "chat", input=chat_input("much later"), after_seconds=600)
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.delete(tid, waiting["run_id"])
        assert caught.value.response.status_code == 409 and "cancel it first" in caught.value.response.text
        await client.runs.cancel(tid, waiting["run_id"], wait=True)
        cancelled = await client.runs.get(tid, waiting["run_id"])
        assert cancelled["status"] == "interrupted"
        await client.runs.delete(tid, waiting["run_id"])
    run(go())


# -- wait and stateless runs ------------------------------------------------------------------


def test_wait_on_a_thread_and_stateless(client, url):
    async def go():
        thread = await client.threads.create()
        values = await client.runs.wait(thread["thread_id"], "chat", input=chat_input("wait for me"),
                                        context={"user_name": "Ann"})
        assert values["messages"][-1]["content"] == "Ann, you said: wait for me"
        stateless = await client.runs.wait(None, "chat", input=chat_input("no thread"))
        assert stateless["messages"][-1]["content"] == "You said: no thread"
        streamed = await collect(client.runs.stream(None, "chat", input=chat_input("streamed"),
                                                    stream_mode="messages-tuple"))
        tokens = "".join(p.data[0]["content"] for p in streamed if p.event == "messages")
        assert tokens == "You said: streamed"
    run(go())

    # A stateless run's thread is purged once it ended (on_completion=delete, the default);
    # with on_completion=keep it stays.
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        for keep in (False, True):
            body = {"assistant_id": "chat", "input": chat_input("gone?"), **({"on_completion": "keep"} if keep else {})}
            reply = http.post("/runs/wait", json=body)
            assert reply.status_code == 200, reply.text
            tid = re.fullmatch(r"/threads/([^/]+)/runs/[^/]+/join", reply.headers["location"]).group(1)
            if keep:
                assert http.get(f"/threads/{tid}").status_code == 200
            else:
                wait_for(lambda: http.get(f"/threads/{tid}").status_code == 404, 30,
                         message=f"stateless thread {tid} to be purged")


def test_a_failed_run_is_an_error_event_and_an_error_result(client):
    async def go():
        thread = await client.threads.create()
        tid = thread["thread_id"]
        bad = {"action": "teleport", "target": "x"}  # prepare raises ValueError: the run fails
        parts = await collect(client.runs.stream(tid, "approval_workflow", input=bad, stream_mode="updates"))
        assert parts[-1].event == "error" and parts[-1].data["error"] == "NODE_FAILED", parts[-1]
        assert "teleport" in parts[-1].data["message"]
        result = await client.runs.wait(tid, "approval_workflow", input=bad, raise_error=False)
        assert result["__error__"]["error"] == "NODE_FAILED"
        with pytest.raises(Exception, match="NODE_FAILED"):
            await client.runs.wait(tid, "approval_workflow", input=bad)
        assert [r["status"] for r in await client.runs.list(tid)] == ["error"] * 3
    run(go())


def test_an_assistants_config_applies_under_the_runs_own(client):
    async def go():
        assistant = await client.assistants.create(
            "chat", config={"configurable": {"reply_prefix": "[bot] ", "user_name": "Zed"}}, name="prefixed")
        said = await client.runs.wait(None, assistant["assistant_id"], input=chat_input("yo"))
        assert said["messages"][-1]["content"] == "[bot] Zed, you said: yo"
        thread = await client.threads.create()
        own = await client.runs.create(thread["thread_id"], assistant["assistant_id"], input=chat_input("yo"),
                                       context={"user_name": "Amy"}, config={"tags": ["mine"]})
        assert own["assistant_id"] == assistant["assistant_id"] and own["kwargs"]["config"]["tags"] == ["mine"]
        said = await client.runs.join(thread["thread_id"], own["run_id"])
        assert said["messages"][-1]["content"] == "[bot] Amy, you said: yo"  # the run's context key wins
        metadata = (await client.threads.get(thread["thread_id"]))["metadata"]
        assert metadata == {"graph_id": "chat", "assistant_id": assistant["assistant_id"]}
    run(go())


# -- streaming --------------------------------------------------------------------------------


def test_stream_modes_on_the_chat_graph(client):
    async def go():
        thread = await client.threads.create()
        parts = await collect(client.runs.stream(thread["thread_id"], "chat", input=chat_input("hello there"),
                                                 stream_mode=CHAT_MODES, config={"configurable": {"reply_prefix": "> "}}))
        assert parts[0].event == "metadata" and parts[0].data["attempt"] == 1
        events = [p.event for p in parts]
        assert {"values", "updates", "messages", "custom"} <= set(events), events
        assert "error" not in events
        ids = [int(p.id) for p in parts]
        assert ids == sorted(ids) and len(set(ids[1:])) == len(ids) - 1, ids  # graphmesh's event sequence

        final = [p.data for p in parts if p.event == "values"][-1]
        reply = final["messages"][-1]
        assert reply["content"] == "> You said: hello there"
        tokens = [p.data for p in parts if p.event == "messages"]
        assert all(len(t) == 2 and t[1]["langgraph_node"] == "chat" for t in tokens)
        chunks = [t[0] for t in tokens if t[0]["type"] == "AIMessageChunk"]
        assert len(chunks) > 1 and "".join(c["content"] for c in chunks) == reply["content"]
        assert [p.data for p in parts if p.event == "custom"] == [{"status": "replying", "words": 5}]
        assert [list(p.data) for p in parts if p.event == "updates"] == [["chat"]]

        # Legacy "messages": the message so far, as the reference's messages/partial.
        legacy = await collect(client.runs.stream(thread["thread_id"], "chat", input=chat_input("old style"),
                                                  stream_mode="messages"))
        names = [p.event for p in legacy]
        assert "messages/metadata" in names and "messages/partial" in names, names
        last = [p.data for p in legacy if p.event == "messages/partial"][-1]
        assert last[0]["content"] == "You said: old style"
    run(go())


def test_join_stream_resumes_after_last_event_id_without_gap_or_duplicate(client):
    async def go():
        thread = await client.threads.create()
        tid = thread["thread_id"]
        created = await client.runs.create(tid, RESEARCH, input={"question": "what is langgraph?",
                                                                  "delay_seconds": 0.5},
                                            stream_mode=["updates", "custom"])
        everything = await collect(client.runs.join_stream(tid, created["run_id"]))
        assert everything[0].event == "metadata"
        body = [p for p in everything[1:]]
        assert {p.event for p in body} >= {"updates", "custom"}
        for cut in (0, len(body) // 2, len(body) - 2):
            again = await collect(client.runs.join_stream(tid, created["run_id"], last_event_id=body[cut].id))
            assert [(p.event, p.id, p.data) for p in again] == [(p.event, p.id, p.data) for p in body[cut + 1:]]
        # A mode the run was created without comes from graphmesh's own events.
        tasks = await collect(client.runs.join_stream(tid, created["run_id"], stream_mode=["tasks"]))
        assert {p.data["name"] for p in tasks if p.event == "tasks"} >= {"plan", "search", "write_report"}
    run(go())


def test_a_reconnect_to_the_streams_location_shows_the_modes_asked_for(url):
    # Legacy "messages" is two SSE events per token (messages/metadata "N:0", messages/partial
    # "N"); the run carries only the worker's "messages", so a reconnect that did not name the
    # modes would see messages-tuple, and resuming inside event N would drop one.
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        tid = http.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "chat", "input": chat_input("legacy tokens"), "stream_mode": ["messages", "values"]}
        with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            location = response.headers["location"]
            events = read_events(response.iter_lines())
        assert re.fullmatch(rf"/threads/{tid}/runs/[^/?]+/stream\?stream_mode=messages&stream_mode=values", location)
        cut = next(i for i, (name, _, event_id) in enumerate(events)
                   if name == "messages/metadata" and event_id.endswith(":0"))
        with http.stream("GET", location, headers={"Last-Event-ID": events[cut][2]}) as response:
            after = read_events(response.iter_lines())
    assert after == events[cut + 1:] and after[0][0] == "messages/partial"


# -- multitask, cancel ------------------------------------------------------------------------


def test_multitask_reject_and_cancel(client):
    async def go():
        thread = await client.threads.create()
        tid = thread["thread_id"]
        slow = await client.runs.create(tid, RESEARCH, input={"question": "grpc deadlines", "delay_seconds": 30})
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.create(tid, RESEARCH, input={"question": "me too"}, multitask_strategy="reject")
        assert caught.value.response.status_code == 409
        assert "already running" in caught.value.response.json()["detail"]
        queued = await client.runs.create(tid, RESEARCH, input={"question": "again", "delay_seconds": 0},
                                          multitask_strategy="enqueue")
        assert queued["multitask_strategy"] == "enqueue"
        assert (await client.runs.get(tid, queued["run_id"]))["status"] == "pending"

        await client.runs.cancel(tid, slow["run_id"], wait=True)
        assert (await client.runs.get(tid, slow["run_id"]))["status"] == "interrupted"
        await client.runs.join(tid, queued["run_id"])  # the queued run starts once the first ended
        assert (await client.runs.get(tid, queued["run_id"]))["status"] == "success"
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.cancel(tid, queued["run_id"])  # already ended
        assert caught.value.response.status_code == 404

        # multitask_strategy=interrupt: the new run cancels the one in progress.
        busy = await client.runs.create(tid, RESEARCH, input={"question": "long", "delay_seconds": 30})
        newer = await client.runs.create(tid, RESEARCH, input={"question": "now", "delay_seconds": 0},
                                         multitask_strategy="interrupt")
        await client.runs.join(tid, newer["run_id"])
        assert [(await client.runs.get(tid, r["run_id"]))["status"] for r in (busy, newer)] == ["interrupted",
                                                                                              "success"]

        # on_disconnect=cancel: the client leaving the stream cancels the run.
        parts = client.runs.stream(tid, RESEARCH, input={"question": "leave", "delay_seconds": 30},
                                   stream_mode="custom", on_disconnect="cancel")
        first = await anext(parts)
        assert first.event == "metadata"
        await parts.aclose()
        run_id = first.data["run_id"]
        for _ in range(300):
            if (await client.runs.get(tid, run_id))["status"] == "interrupted":
                break
            await asyncio.sleep(0.1)
        assert (await client.runs.get(tid, run_id))["status"] == "interrupted"
    run(go())


# -- interrupts -------------------------------------------------------------------------------


def test_interrupt_and_resume_through_the_review_tier(client, review):
    async def go():
        thread = await client.threads.create()
        tid = thread["thread_id"]
        first = await collect(client.runs.stream(
            tid, RESEARCH, input={"question": "what is langgraph?", "delay_seconds": 0, "review": True},
            stream_mode=["values", "updates"]))
        run_id = first[0].data["run_id"]
        interrupts = [p.data["__interrupt__"] for p in first if p.event == "updates" and "__interrupt__" in p.data]
        assert len(interrupts) == 1 and interrupts[0][0]["value"]["node"] == "write_report", [p.event for p in first]
        assert first[-1].event == "values" and first[-1].data["__interrupt__"] == interrupts[0]  # the stream ends there
        assert (await client.threads.get(tid))["status"] == "interrupted"
        assert (await client.runs.get(tid, run_id))["status"] == "interrupted"

        resumed = await collect(client.runs.stream(tid, RESEARCH, command={"resume": {"decision": "approve"}},
                                                   stream_mode=["values", "updates"]))
        assert resumed[0].event == "metadata" and resumed[0].data["run_id"] == run_id  # the same run goes on
        assert [list(p.data) for p in resumed if p.event == "updates"] == [["write_report"]]
        final = [p.data for p in resumed if p.event == "values"][-1]
        assert final["report"].startswith("# what is langgraph?") and "__interrupt__" not in final
        assert (await client.runs.get(tid, run_id))["status"] == "success"
        assert (await client.threads.get(tid))["status"] == "idle"
        return run_id

    run_id = run(go())
    # The resume was a decision of the review tier, recorded and audited like any other: on a
    # record-shaped approval (the graph gets graphmesh's decision record) {"decision": ...} is it.
    approvals = review.ListApprovals(rpb.ListApprovalsRequest(run_id=run_id), timeout=10).approvals
    assert [a.status for a in approvals] == [rpb.APPROVAL_STATUS_APPROVED]
    assert approvals[0].decision.kind == rpb.DECISION_KIND_APPROVE
    assert "approval_decided" in {r.action for r in list_audit(review, run_id=run_id)}


def test_several_interrupts_need_their_ids(client):
    async def go():
        thread = await client.threads.create()
        tid = thread["thread_id"]
        waited = await client.runs.wait(tid, "parallel_review", input={"request": "new laptop", "amount": 900})
        pending = {i["id"]: i["value"]["check"] for i in waited["__interrupt__"]}
        assert sorted(pending.values()) == ["budget", "legal"]
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.runs.wait(tid, "parallel_review", command={"resume": True})
        assert caught.value.response.status_code == 422
        assert all(i in caught.value.response.json()["detail"] for i in pending)
        final = await client.runs.wait(tid, "parallel_review", command={"resume": {i: {"decision": "approve"} for i in pending}})
        assert final["outcome"] and "__interrupt__" not in final
        assert (await client.threads.get(tid))["status"] == "idle"
        with pytest.raises(httpx.HTTPStatusError) as caught:  # nothing left to resume
            await client.runs.wait(tid, "parallel_review", command={"resume": True})
        assert caught.value.response.status_code == 409
    run(go())


def test_new_input_on_an_interrupted_thread_drops_the_interrupt(client, review):
    async def go():
        thread = await client.threads.create(metadata={"team": "ops"})
        tid = thread["thread_id"]
        first = await client.runs.create(tid, "approval_workflow", input={"action": "deploy", "target": "web"})
        waited = await client.runs.join(tid, first["run_id"])
        assert "__interrupt__" in waited
        tagged = (await client.threads.get(tid))["metadata"]
        assert tagged["graph_id"] == "approval_workflow"

        # A request refused (by the gateway's checks or by the api's) cancels nothing and
        # leaves the thread's metadata as it was.
        refused = [
            dict(input={"action": "deploy", "target": "db"}, config={"tags": "not-a-list"}),  # 422, gateway
            dict(input={"action": "deploy", "target": "db"}, config={"recursion_limit": "many"}),  # 422, gateway
            dict(input={"action": "deploy"}),  # 422: the graph's input schema needs a target (api)
        ]
        for kwargs in refused:
            with pytest.raises(httpx.HTTPStatusError) as caught:
                await client.runs.create(tid, "approval_workflow", multitask_strategy="reject", **kwargs)
            assert caught.value.response.status_code == 422, (kwargs, caught.value.response.text)
        with pytest.raises(httpx.HTTPStatusError) as caught:  # another graph's assistant (api: 409)
            await client.runs.create(tid, RESEARCH, input={"question": "q"})
        assert caught.value.response.status_code == 409
        assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
        assert (await client.threads.get(tid))["metadata"] == tagged
        approvals = (await asyncio.to_thread(review.ListApprovals, rpb.ListApprovalsRequest(run_id=first["run_id"]),
                                             timeout=10)).approvals
        assert [a.status for a in approvals] == [rpb.APPROVAL_STATUS_PENDING]

        again = await client.runs.wait(tid, "approval_workflow", input={"action": "deploy", "target": "api"},
                                       multitask_strategy="reject")
        assert again["target"] == "api" and "__interrupt__" in again
        assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"  # cancelled
        return first["run_id"]

    run_id = run(go())
    approvals = review.ListApprovals(rpb.ListApprovalsRequest(run_id=run_id), timeout=10).approvals
    assert [a.status for a in approvals] == [rpb.APPROVAL_STATUS_CANCELLED]


# -- a gateway replica dies mid-stream ----------------------------------------------------------


def read_events(lines: Iterator[str], limit: int | None = None) -> list[tuple[str, Any, str | None]]:
    """(event, data, id) as the SDK's decoder reads them from a response's lines, up to
    `limit` events; stops at a broken connection."""
    decoder = SSEDecoder()
    out: list[tuple[str, Any, str | None]] = []
    try:
        for line in lines:
            part = decoder.decode(line.encode())
            if part is not None and part.event:
                out.append((part.event, part.data, part.id))
                if limit is not None and len(out) >= limit:
                    return out
    except httpx.HTTPError:
        pass  # the replica went away
    return out


def test_a_replica_killed_mid_stream_the_other_continues_it(mesh):
    first_url, second_url = mesh.gateway_url_of("gateway-2"), mesh.gateway_url_of("gateway")
    with httpx.Client(base_url=first_url, timeout=HTTP_TIMEOUT) as doomed, \
            httpx.Client(base_url=second_url, timeout=HTTP_TIMEOUT) as other:
        tid = other.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": RESEARCH, "input": {"question": "what is grpc?", "delay_seconds": 4},
                "stream_mode": ["updates", "custom"]}
        with doomed.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            assert response.status_code == 200
            location = response.headers["location"]
            lines = response.iter_lines()
            before = read_events(lines, limit=4)
            mesh.stop_service("gateway-2", kill=True)
            before += read_events(lines)
        assert before[0][0] == "metadata" and len(before) >= 4
        last_id = before[-1][2]
        heartbeats: list[str] = []
        with other.stream("GET", location, headers={"Last-Event-ID": last_id}) as response:
            assert response.status_code == 200
            after = read_events(line for line in response.iter_lines()
                                if not (line.startswith(":") and heartbeats.append(line)))
        with other.stream("GET", location) as response:
            whole = read_events(response.iter_lines())
    assert whole[0][0] == "metadata"
    assert before[1:] + after == whole[1:], "events lost or repeated across the replicas"
    assert [e for e, _, _ in after].count("updates") >= 1
    # The run sleeps seconds between its stages; the stream meanwhile says it is alive.
    assert heartbeats and set(heartbeats) == {": heartbeat"}
