"""agent-chat-ui's and agent-inbox's flows through the gateway, as the HTTP calls those apps make.

The requests are the ones the apps' sources send through LangGraph's JS SDK (agent-chat-ui
fdc87e6: src/providers/Stream.tsx, Thread.tsx, components/thread/index.tsx, with useStream from
@langchain/langgraph-sdk/react; agent-inbox f38301b: src/components/agent-inbox/contexts/
ThreadContext.tsx, contexts/utils.ts, hooks/use-interrupted-actions.tsx), written out here with
httpx so that every body, header and query is visible: what the SDK leaves undefined is left out.

The graphs are the LangGraph project in bench/gateway-graph (langgraph.json: `chat`, a chat model
that streams tokens and a custom event; `inbox`, an agent-inbox HumanInterrupt), which
`langgraph dev` serves too. GRAPHMESH_GATEWAY_TEST_URL=http://host:port (and, if it needs one,
GRAPHMESH_GATEWAY_TEST_API_KEY) runs the same calls against a server already serving that project
instead of a mesh of the module's own: `langgraph dev`, the reference, or a running gateway. The
review-tier checks need the mesh and are then left out.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest

from graphmesh.client import review_stub
from graphmesh.mesh import REPO_ROOT, Mesh
from graphmesh.v1 import review_service_pb2 as rpb
from helpers import private_mesh, wait_for

PROJECT = REPO_ROOT / "bench" / "gateway-graph" / "langgraph.json"
URL_ENV, KEY_ENV = "GRAPHMESH_GATEWAY_TEST_URL", "GRAPHMESH_GATEWAY_TEST_API_KEY"
HTTP_TIMEOUT = 60.0  # bounds a hung call; not a timing assertion
ORIGIN = "http://localhost:3000"  # both apps run in a browser (next dev's default port), the server elsewhere
STREAM_MODES = ["values", "messages-tuple", "custom"]  # useStream: submit's ["values"] + messages + onCustomEvent


@dataclass
class Server:
    url: str
    headers: dict[str, str]
    mesh: Mesh | None  # None: a server given by URL_ENV (no review tier to look at)
    token: str = ""


@dataclass
class Event:
    event: str
    data: Any
    id: str | None


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if os.environ.get(URL_ENV):
        key = os.environ.get(KEY_ENV)
        yield Server(os.environ[URL_ENV].rstrip("/"), {"X-Api-Key": key} if key else {}, None)
        return
    with private_mesh("gateway-ui", manifest=PROJECT, auth="token", workers=1, gateway_port=0) as mesh:
        token = mesh.create_token("inbox-reviewer", ["admin"], created_by="test")[1]
        # Both apps send a LangSmith-style API key as X-Api-Key (the SDK's apiKey / agent-inbox's
        # defaultHeaders); the gateway takes graphmesh tokens there.
        yield Server(mesh.gateway_url, {"X-Api-Key": token}, mesh, token)


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    headers = {**server.headers, "Origin": ORIGIN}
    with httpx.Client(base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT) as client:
        yield client


def exposed(response: httpx.Response) -> set[str]:
    """The response headers a browser lets the page's script read (besides the safelisted ones)."""
    return {h.strip().lower() for h in response.headers.get("access-control-expose-headers", "").split(",")}


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (f"{response.request.method} {response.request.url.path} -> "
                                         f"{response.status_code}: {response.text[:500]}")
    return response.json()


def read_sse(response: httpx.Response) -> list[Event]:
    """Server-Sent Events as the SDK's SSEDecoder reads them: `event`, `data` (JSON), `id`;
    comment lines (heartbeats) skipped."""
    events: list[Event] = []
    name, data, event_id = "", [], None
    for line in response.iter_lines():
        if line == "":
            if name or data:
                events.append(Event(name or "message", json.loads("\n".join(data)) if data else None, event_id))
            name, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
    return events


def stream_run(http: httpx.Client, thread_id: str, body: dict) -> tuple[str, list[Event]]:
    """POST /threads/{id}/runs/stream read to its end; the run id from Content-Location."""
    with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
        if response.status_code != 200:
            response.read()
            pytest.fail(f"runs/stream -> {response.status_code}: {response.text[:500]}")
        assert response.headers["content-type"].startswith("text/event-stream")
        where = re.fullmatch(rf"/threads/{thread_id}/runs/([^/]+)", response.headers.get("content-location", ""))
        assert where, f"Content-Location: {response.headers.get('content-location')!r}"
        # The SDK reads the run id from Content-Location: a browser shows it only if exposed.
        assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN)
        assert "content-location" in exposed(response) or "*" in exposed(response), response.headers
        events = read_sse(response)
    errors = [e.data for e in events if e.event == "error"]
    assert not errors, f"error events: {errors}"
    assert events and events[0].event == "metadata", [e.event for e in events[:3]]
    assert events[0].data["run_id"] == where.group(1)
    return where.group(1), events


def search_ids(http: httpx.Client, body: dict) -> dict[str, dict]:
    return {t["thread_id"]: t for t in ok(http.post("/threads/search", json=body))}


def human(text: str) -> dict:
    # agent-chat-ui's handleSubmit: a uuid id and content blocks.
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": text}]}


def chat_submit(http: httpx.Client, thread_id: str, **fields) -> tuple[str, list[Event]]:
    """useStream.submit as agent-chat-ui calls it (streamMode ["values"], streamSubgraphs and
    streamResumable on; useStream adds messages-tuple and custom, and onDisconnect "continue")."""
    body = {**fields, "stream_mode": STREAM_MODES, "stream_subgraphs": True, "stream_resumable": True,
            "assistant_id": "chat", "on_disconnect": "continue"}
    return stream_run(http, thread_id, body)


def check_chat_stream(events: list[Event]) -> dict:
    """The stream's message tokens add up to the reply in its last values event; returns that state."""
    kinds = [e.event for e in events]
    assert {"values", "messages", "custom"} <= set(kinds), kinds
    chunks = [e.data for e in events if e.event == "messages"]
    for chunk in chunks:
        assert isinstance(chunk, list) and len(chunk) == 2, chunk  # messages-tuple: [message chunk, metadata]
        assert chunk[1].get("langgraph_node"), chunk[1]
    ai_chunks = [c[0] for c in chunks if c[0]["type"] == "AIMessageChunk"]
    assert len(ai_chunks) > 1, "the reply came in one piece: token streaming not exercised"
    final = [e.data for e in events if e.event == "values"][-1]
    reply = final["messages"][-1]
    assert reply["type"] == "ai"
    assert "".join(c["content"] for c in ai_chunks) == reply["content"]
    assert {c["id"] for c in ai_chunks} == {reply["id"]}
    return final


# -- the browser ---------------------------------------------------------------------------------

# Fixed ids: test ids must be the same in every collection (pytest-xdist compares them).
THREAD, RUN = "6395c9fa-bd82-4c18-ac43-1e5e96ca93f0", "3bfbd029-3d6f-41a8-a155-4edd6e64b8b1"


@pytest.mark.parametrize("method, path, request_headers", [
    ("GET", "/info", "x-api-key"),
    ("POST", "/threads/search", "content-type,x-api-key"),
    ("POST", f"/threads/{THREAD}/runs/stream", "content-type,x-api-key"),
    ("POST", f"/threads/{THREAD}/history", "content-type,x-api-key"),
    ("POST", f"/threads/{THREAD}/state", "content-type,x-api-key"),
    # joinStream's reconnect sends Last-Event-ID.
    ("GET", f"/threads/{THREAD}/runs/{RUN}/stream", "last-event-id,x-api-key"),
])
def test_browser_preflight(server, method, path, request_headers):
    """The CORS preflight a browser sends before each of the apps' calls: no credentials on it."""
    response = httpx.options(server.url + path, timeout=HTTP_TIMEOUT, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": request_headers})
    assert response.status_code in (200, 204), f"preflight {method} {path} -> {response.status_code}: {response.text}"
    assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN), response.headers
    methods = response.headers.get("access-control-allow-methods", "").upper()
    assert method in methods or "*" in methods, response.headers
    allowed = {h.strip().lower() for h in response.headers.get("access-control-allow-headers", "").split(",")}
    assert "*" in allowed or set(request_headers.split(",")) <= allowed, response.headers


# -- agent-chat-ui ------------------------------------------------------------------------------

def test_agent_chat_ui_flow(http):
    # checkGraphStatus: GET /info, only res.ok matters.
    assert http.get("/info").status_code == 200

    # First message on a new thread: useStream creates it with no metadata of its own.
    thread = ok(http.post("/threads", json={"metadata": {}}))
    tid = thread["thread_id"]
    first = human("hello gateway")
    run_id, events = chat_submit(http, tid, input={"messages": [first]})
    final = check_chat_stream(events)
    assert final["messages"][0]["id"] == first["id"] and final["messages"][0]["content"] == first["content"]
    assert len(final["messages"]) == 2

    # The thread list (useThreads.getThreads): by graph id, or by assistant id when the UI was
    # given an assistant's UUID. The run wrote both into the thread's metadata.
    listed = search_ids(http, {"metadata": {"graph_id": "chat"}, "limit": 100, "offset": 0})
    assert tid in listed, f"thread {tid} not found by graph_id among {list(listed)}"
    entry = listed[tid]
    assert entry["status"] == "idle" and entry["metadata"]["graph_id"] == "chat", entry
    assistant_id = entry["metadata"]["assistant_id"]
    assert uuid.UUID(assistant_id)
    assert tid in search_ids(http, {"metadata": {"assistant_id": assistant_id}, "limit": 100, "offset": 0})
    assert tid not in search_ids(http, {"metadata": {"graph_id": "inbox"}, "limit": 100, "offset": 0})
    assert ok(http.get(f"/threads/{tid}/runs/{run_id}"))["status"] == "success"

    # fetchStateHistory: true -> POST /threads/{id}/history {limit: 10}, newest first, each
    # checkpoint's parent the next one down.
    history = ok(http.post(f"/threads/{tid}/history", json={"limit": 10}))
    assert history and history[0]["values"] == final and history[0]["next"] == []
    for newer, older in zip(history, history[1:]):
        assert newer["parent_checkpoint"]["checkpoint_id"] == older["checkpoint"]["checkpoint_id"]
    # GET /state (useStream with fetchStateHistory off, agent-inbox) is the head of the history.
    assert ok(http.get(f"/threads/{tid}/state")) == history[0]

    # A second message on the same thread continues it.
    second = human("and again")
    _, events = chat_submit(http, tid, input={"messages": [second]})
    final2 = check_chat_stream(events)
    assert [m["id"] for m in final2["messages"][:3]] == [first["id"], final["messages"][1]["id"], second["id"]]
    assert len(final2["messages"]) == 4

    # Regenerate the last reply (handleRegenerate): no input, the checkpoint the reply was first
    # seen in's parent (the SDK drops its thread_id), a new branch from there.
    history = ok(http.post(f"/threads/{tid}/history", json={"limit": 10}))
    first_seen = [s for s in history if final2["messages"][-1]["id"] in {m["id"] for m in s["values"]["messages"]}][-1]
    parent = {k: v for k, v in first_seen["parent_checkpoint"].items() if k != "thread_id"}
    _, events = chat_submit(http, tid, checkpoint=parent)
    branched = check_chat_stream(events)
    assert [m["id"] for m in branched["messages"][:3]] == [m["id"] for m in final2["messages"][:3]]
    assert branched["messages"][3]["id"] != final2["messages"][3]["id"], "regenerate did not produce a new reply"
    assert ok(http.get(f"/threads/{tid}/state"))["values"] == branched


# -- agent-inbox ------------------------------------------------------------------------------

def start_inbox_thread(http: httpx.Client, to: str) -> str:
    """What puts an item in the inbox (any client, not the inbox itself): a run that interrupts."""
    tid = ok(http.post("/threads", json={"metadata": {"purpose": "inbox-test"}}))["thread_id"]
    run = ok(http.post(f"/threads/{tid}/runs", json={"assistant_id": "inbox", "input": {"to": to}}))
    http.get(f"/threads/{tid}/runs/{run['run_id']}/join")
    return tid


def interrupts_of(thread: dict) -> list[dict]:
    """agent-inbox's getInterruptFromThread for a HumanInterrupt list: thread.interrupts is
    {task id: [{value, id}]}, and the first interrupt's value is the list of requests."""
    assert thread["interrupts"], f"interrupted thread without interrupts: {thread}"
    out = []
    for items in thread["interrupts"].values():
        value = items[0]["value"]
        assert isinstance(value, list) and value[0]["action_request"]["action"] and value[0]["config"], value
        out += value
    return out


def inbox_search(http: httpx.Client) -> dict[str, dict]:
    # fetchThreads("interrupted"): offset/limit from the page, status, metadata from the inbox's graph id.
    return search_ids(http, {"offset": 0, "limit": 100, "status": "interrupted", "metadata": {"graph_id": "inbox"}})


def send_human_response(http: httpx.Client, tid: str, response: dict) -> list[Event]:
    """handleSubmit for response / edit / accept: sendHumanResponse(..., {stream: true})."""
    body = {"command": {"resume": [response]}, "stream_mode": "events", "assistant_id": "inbox"}
    _, events = stream_run(http, tid, body)
    nodes = {e.data.get("metadata", {}).get("langgraph_node") for e in events
             if e.event == "events" and e.data.get("event") == "on_chain_start"}
    assert "review" in nodes, f"no on_chain_start for the review node in {[e.event for e in events][:20]}"
    return events


def test_agent_inbox_flow(http, server):
    people = ["ana@example.com", "bo@example.com", "cy@example.com", "di@example.com"]
    threads = {to: start_inbox_thread(http, to) for to in people}
    answered, accepted, ignored, resolved = (threads[p] for p in people)
    idle_chat = ok(http.post("/threads", json={"metadata": {"graph_id": "inbox"}}))["thread_id"]

    # The "interrupted" inbox lists them, and only interrupted threads.
    listed = inbox_search(http)
    assert set(threads.values()) <= set(listed), f"missing from the inbox: {set(threads.values()) - set(listed)}"
    assert idle_chat not in listed
    for to, tid in threads.items():
        thread = listed[tid]
        assert thread["status"] == "interrupted"
        (request,) = interrupts_of(thread)
        assert request["action_request"] == {"action": "send_email", "args": {"to": to, "body": f"Hello {to}"}}
        assert request["config"] == {"allow_ignore": True, "allow_respond": True, "allow_edit": True,
                                     "allow_accept": True}
        # The fallback agent-inbox takes when thread.interrupts is empty: the last task's last interrupt.
        state = ok(http.get(f"/threads/{tid}/state"))
        assert state["next"] == ["review"]
        assert state["tasks"][-1]["interrupts"][-1]["value"] == [request]

    # Respond with text (streamed, stream_mode "events"), then fetchSingleThread.
    send_human_response(http, answered, {"type": "response", "args": "Say hi to Ana from me"})
    thread = ok(http.get(f"/threads/{answered}"))
    assert thread["status"] == "idle" and not thread["interrupts"], thread
    assert thread["values"]["branch"] == "response" and thread["values"]["feedback"] == "Say hi to Ana from me"

    # Accept: an edit with no edits made goes out as accept, carrying the action request.
    action = interrupts_of(listed[accepted])[0]["action_request"]
    send_human_response(http, accepted, {"type": "accept", "args": action})
    thread = ok(http.get(f"/threads/{accepted}"))
    assert thread["status"] == "idle" and thread["values"]["branch"] == "accept", thread
    assert thread["values"]["sent_to"] == "bo@example.com"

    # Ignore: runs.create with an ignore response, not streamed.
    run = ok(http.post(f"/threads/{ignored}/runs", json={"assistant_id": "inbox",
                                                         "command": {"resume": [{"type": "ignore", "args": None}]}}))
    assert run["status"] in ("pending", "running", "success"), run
    http.get(f"/threads/{ignored}/runs/{run['run_id']}/join")
    thread = ok(http.get(f"/threads/{ignored}"))
    assert thread["status"] == "idle" and thread["values"]["branch"] == "ignore", thread

    # Mark as resolved (ignoreThread): the state updated as __end__ with no values; the graph
    # never runs its review node.
    ok(http.post(f"/threads/{resolved}/state", json={"values": None, "as_node": "__end__"}))
    thread = ok(http.get(f"/threads/{resolved}"))
    assert thread["status"] == "idle" and not thread["interrupts"], thread
    assert "branch" not in thread["values"]
    state = ok(http.get(f"/threads/{resolved}/state"))
    assert state["next"] == [] and state["tasks"] == []

    # None of them is in the interrupted inbox any more; all four are idle.
    assert not set(threads.values()) & set(inbox_search(http))
    idle = search_ids(http, {"offset": 0, "limit": 100, "status": "idle", "metadata": {"graph_id": "inbox"}})
    assert set(threads.values()) <= set(idle)

    if server.mesh is not None:
        check_review_tier(server, {
            answered: ("REJECTED", "REJECT", "Say hi to Ana from me", None),  # exactly a reject's value, with it as the comment
            accepted: ("RESPONDED", "RESPOND", None, [{"type": "accept", "args": action}]),  # args: not an approve's value
            ignored: ("REJECTED", "REJECT", None, None),
        }, resolved)


def check_review_tier(server: Server, resumed: dict[str, tuple], resolved: str) -> None:
    """The review tier recorded each answer the inbox gave as a decision by the token's
    principal: (status, kind, comment, value). A HumanResponse list that is exactly what a
    decision resumes with is that decision (services/gateway/resume.py), any other a RESPOND
    with the value; the approval of the thread marked resolved is closed."""
    from google.protobuf import json_format

    stub = review_stub(server.mesh.review_address, server.token)

    def approvals(tid: str) -> list[rpb.Approval]:
        return list(stub.ListApprovals(rpb.ListApprovalsRequest(thread_id=tid), timeout=10).approvals)

    for tid in [*resumed, resolved]:
        wait_for(lambda: approvals(tid) and all(a.status != rpb.APPROVAL_STATUS_PENDING for a in approvals(tid)),
                 30, message=lambda: f"thread {tid}'s approval to be closed: {approvals(tid)}")
    for tid, (status, kind, comment, value) in resumed.items():
        (a,) = approvals(tid)
        assert a.resume_shape == "human_interrupt", a
        assert (rpb.ApprovalStatus.Name(a.status), rpb.DecisionKind.Name(a.decision.kind), a.decision.reviewer) == (
            f"APPROVAL_STATUS_{status}", f"DECISION_KIND_{kind}", "inbox-reviewer"), a
        if comment is not None:
            assert a.decision.comment == comment, a
        if value is not None:
            assert json_format.MessageToDict(a.decision.value) == value, a
        else:
            assert not a.decision.HasField("value"), a
    (a,) = approvals(resolved)
    assert a.status == rpb.APPROVAL_STATUS_CANCELLED, rpb.ApprovalStatus.Name(a.status)
