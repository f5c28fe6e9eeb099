"""The LangGraph HTTP API gateway's resource endpoints against a real mesh (api, review,
workers, the gateway process), driven by the clients LangGraph users already have:
langgraph_sdk's async and sync clients, plus plain HTTP where a client would hide the
status code, the error body or the CORS headers.

One mesh for the module, with token auth on: the clients send the mesh's token as their
API key (X-Api-Key) or as a bearer token, and a call without one is the api's 401."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError

from graphmesh.assistants import system_assistant_id
from graphmesh.client import api_client
from graphmesh.v1 import run_pb2, run_service_pb2, schedule_service_pb2
from helpers import private_mesh, struct, wait_for

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def gw():
    with private_mesh("gateway-resources", workers=1, auth="token", gateway_port=0) as mesh:
        _, token = mesh.create_token("gateway-tester", ["admin"])
        mesh.token = token
        yield mesh


@pytest.fixture(scope="module")
def http(gw):
    with httpx.Client(base_url=gw.gateway_url, timeout=TIMEOUT, headers={"X-Api-Key": gw.token}) as c:
        yield c


@pytest.fixture(scope="module")
def sdk(gw):
    return get_sync_client(url=gw.gateway_url, api_key=gw.token, timeout=TIMEOUT)


def run_async(gw, work):
    """Runs `work(client)` with langgraph_sdk's async client."""
    async def main():
        client = get_client(url=gw.gateway_url, api_key=gw.token, timeout=TIMEOUT)
        try:
            return await work(client)
        finally:
            await client.http.client.aclose()
    return asyncio.run(main())


# -- meta, auth, errors, CORS ----------------------------------------------------------------


def test_ok_and_info(http):
    assert http.get("/ok").json() == {"ok": True}
    assert http.get("/ok", params={"check_db": "1"}).json() == {"ok": True, "services": {"api": "healthy"}}
    info = http.get("/info").json()
    assert info["flags"]["assistants"] is True and info["flags"]["crons"] is True
    assert info["flags"]["langsmith"] is False and info["version"] and info["langgraph_py_version"]


def test_credentials_are_the_callers_own(gw, http):
    bare = httpx.post(f"{gw.gateway_url}/threads/search", json={}, timeout=TIMEOUT)
    assert bare.status_code == 401 and "detail" in bare.json()
    wrong = httpx.post(f"{gw.gateway_url}/threads/search", json={}, headers={"X-Api-Key": "gm_nope_nope"},
                       timeout=TIMEOUT)
    assert wrong.status_code == 401
    bearer = httpx.post(f"{gw.gateway_url}/threads/search", json={},
                        headers={"Authorization": f"Bearer {gw.token}"}, timeout=TIMEOUT)
    assert bearer.status_code == 200 and isinstance(bearer.json(), list)
    # /ok and /info answer without credentials (health checks, agent-chat-ui's server check).
    assert httpx.get(f"{gw.gateway_url}/info", timeout=TIMEOUT).status_code == 200


def test_errors_are_detail_json_with_the_reference_statuses(http):
    missing = http.get(f"/threads/{uuid.uuid4()}")
    assert missing.status_code == 404 and set(missing.json()) == {"detail"}
    assert http.get("/no/such/route").json() == {"detail": "Not Found"}
    not_json = http.post("/threads", content=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json() == {"detail": "Invalid JSON in request body"}
    bad_field = http.post("/threads/search", json={"limit": "ten"})
    assert bad_field.status_code == 422 and "'limit'" in bad_field.json()["detail"]
    required = http.post("/assistants", json={"name": "no graph"})
    assert required.status_code == 422 and "graph_id" in required.json()["detail"]
    bad_status = http.post("/threads/search", json={"status": "sleeping"})
    assert bad_status.status_code == 422 and "'status'" in bad_status.json()["detail"]


def test_cors_for_browser_clients(gw, http):
    preflight = httpx.options(f"{gw.gateway_url}/threads/search", timeout=TIMEOUT, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type,last-event-id"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert {"x-api-key", "content-type", "last-event-id"} <= {
        h.strip() for h in preflight.headers["access-control-allow-headers"].lower().split(",")}
    answer = http.post("/threads/search", json={"limit": 1}, headers={"Origin": "http://localhost:3000"})
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert {"content-location", "location", "x-pagination-next", "x-pagination-total"} <= exposed


# -- assistants ------------------------------------------------------------------------------


def test_a_graph_name_is_its_system_assistant(gw):
    async def work(client):
        by_name = await client.assistants.get("tiny")
        by_id = await client.assistants.get(system_assistant_id("tiny"))
        found = await client.assistants.search(graph_id="tiny", limit=100)
        graph = await client.assistants.get_graph("tiny")
        schemas = await client.assistants.get_schemas("tiny")
        subgraphs = await client.assistants.get_subgraphs("tiny")
        return by_name, by_id, found, graph, schemas, subgraphs

    by_name, by_id, found, graph, schemas, subgraphs = run_async(gw, work)
    assert by_name == by_id and by_name["assistant_id"] == system_assistant_id("tiny")
    assert by_name["graph_id"] == "tiny" and by_name["metadata"]["created_by"] == "system" and by_name["version"] == 1
    assert by_name["assistant_id"] in {a["assistant_id"] for a in found}
    assert {"normalize", "count", "summarize"} <= {n["id"] for n in graph["nodes"]}
    assert all("id" not in (n.get("data") or {}) for n in graph["nodes"])
    assert schemas["graph_id"] == "tiny" and "text" in schemas["input_schema"]["properties"]
    assert subgraphs == {}


def test_assistants_create_update_search_count_delete(gw):
    marker = uuid.uuid4().hex

    async def work(client):
        created = await client.assistants.create("tiny", config={"configurable": {"style": "short"}},
                                                 metadata={"marker": marker, "team": "a"}, name="short tiny")
        with pytest.raises(ConflictError):
            await client.assistants.create("tiny", assistant_id=created["assistant_id"])
        same = await client.assistants.create("tiny", assistant_id=created["assistant_id"], if_exists="do_nothing")
        updated = await client.assistants.update(created["assistant_id"], metadata={"team": "b"},
                                                 description="a shorter summary")
        searched = await client.assistants.search(metadata={"marker": marker})
        counted = await client.assistants.count(metadata={"marker": marker})
        versions = await client.http.post(f"/assistants/{created['assistant_id']}/versions", json={})
        await client.assistants.delete(created["assistant_id"])
        with pytest.raises(NotFoundError):
            await client.assistants.get(created["assistant_id"])
        return created, same, updated, searched, counted, versions

    created, same, updated, searched, counted, versions = run_async(gw, work)
    assert created["graph_id"] == "tiny" and created["name"] == "short tiny" and created["version"] == 1
    assert created["config"]["configurable"] == {"style": "short"}
    assert same["assistant_id"] == created["assistant_id"]
    # PATCH merges metadata and makes a new version, as the reference server does.
    assert updated["metadata"] == {"marker": marker, "team": "b"} and updated["version"] == 2
    assert updated["description"] == "a shorter summary" and updated["name"] == "short tiny"
    assert [a["assistant_id"] for a in searched] == [created["assistant_id"]] and counted == 1
    assert [v["version"] for v in versions] == [2]


def test_deleting_an_assistant_with_its_threads_checks_the_assistant_first(http):
    system = system_assistant_id("tiny")
    thread = http.post("/threads", json={"metadata": {"graph_id": "tiny", "assistant_id": system}}).json()
    refused = http.delete(f"/assistants/{system}", params={"delete_threads": "true"})
    assert refused.status_code == 409 and "system assistant" in refused.json()["detail"]
    assert http.get(f"/threads/{thread['thread_id']}").status_code == 200  # its threads are kept

    mine = http.post("/assistants", json={"graph_id": "tiny"}).json()
    tagged = http.post("/threads", json={"metadata": {"assistant_id": mine["assistant_id"]}}).json()
    assert http.delete(f"/assistants/{mine['assistant_id']}", params={"delete_threads": "true"}).status_code == 204
    assert http.get(f"/assistants/{mine['assistant_id']}").status_code == 404
    assert http.get(f"/threads/{tagged['thread_id']}").status_code == 404
    assert http.get(f"/threads/{thread['thread_id']}").status_code == 200


def test_assistant_search_pages_with_the_reference_headers(gw, http):
    marker = uuid.uuid4().hex
    for i in range(3):
        http.post("/assistants", json={"graph_id": "tiny", "name": f"page {i}", "metadata": {"page": marker}})
    first = http.post("/assistants/search", json={"metadata": {"page": marker}, "limit": 2})
    assert len(first.json()) == 2
    assert first.headers["X-Pagination-Next"] == "2" and first.headers["X-Pagination-Total"] == "3"
    last = http.post("/assistants/search", json={"metadata": {"page": marker}, "limit": 2, "offset": 2})
    assert len(last.json()) == 1 and "X-Pagination-Next" not in last.headers
    assert last.headers["X-Pagination-Total"] == "3"
    names = [a["name"] for a in http.post("/assistants/search", json={
        "metadata": {"page": marker}, "sort_by": "name", "sort_order": "asc", "select": ["name"]}).json()]
    assert names == ["page 0", "page 1", "page 2"]


# -- threads ---------------------------------------------------------------------------------


def test_threads_create_get_update_search_count_delete(sdk):
    marker = uuid.uuid4().hex
    thread = sdk.threads.create(metadata={"graph_id": "tiny", "marker": marker})
    assert thread["status"] == "idle" and thread["metadata"] == {"graph_id": "tiny", "marker": marker}
    assert thread["interrupts"] == {}
    with pytest.raises(ConflictError):
        sdk.threads.create(thread_id=thread["thread_id"])
    again = sdk.threads.create(thread_id=thread["thread_id"], if_exists="do_nothing")
    assert again["thread_id"] == thread["thread_id"] and again["metadata"] == thread["metadata"]
    updated = sdk.threads.update(thread["thread_id"], metadata={"topic": "x"})
    assert updated["metadata"] == {"graph_id": "tiny", "marker": marker, "topic": "x"}
    assert sdk.threads.get(thread["thread_id"])["metadata"]["topic"] == "x"
    # agent-chat-ui lists a graph's threads by their metadata.
    found = sdk.threads.search(metadata={"graph_id": "tiny", "marker": marker}, limit=10)
    assert [t["thread_id"] for t in found] == [thread["thread_id"]]
    assert sdk.threads.search(ids=[thread["thread_id"]], status="idle")[0]["thread_id"] == thread["thread_id"]
    assert sdk.threads.search(metadata={"marker": marker}, status="busy") == []
    assert sdk.threads.count(metadata={"marker": marker}) == 1
    sdk.threads.delete(thread["thread_id"])
    with pytest.raises(NotFoundError):
        sdk.threads.get(thread["thread_id"])
    with pytest.raises(NotFoundError):
        sdk.threads.delete(thread["thread_id"])


def test_unsupported_thread_options_are_refused_by_name(http):
    ttl = http.post("/threads", json={"ttl": {"ttl": 5}})
    assert ttl.status_code == 422 and "'ttl'" in ttl.json()["detail"]
    copy = http.post(f"/threads/{uuid.uuid4()}/copy", json={})
    assert copy.status_code == 501 and "not supported" in copy.json()["detail"]


def test_state_history_and_update_after_a_run(gw, sdk):
    thread = sdk.threads.create(metadata={"graph_id": "tiny"})
    thread_id = thread["thread_id"]
    empty = sdk.threads.get_state(thread_id)
    assert empty["values"] == {} and empty["checkpoint"] is None and empty["next"] == []
    _run_on(gw, "tiny", thread_id, {"text": "Hello Gateway"}, run_pb2.RUN_STATUS_COMPLETED)

    state = sdk.threads.get_state(thread_id)
    assert state["values"]["text"] == "Hello Gateway" and state["values"]["word_count"] == 2
    assert state["next"] == [] and state["tasks"] == []
    assert state["checkpoint"]["thread_id"] == thread_id and state["checkpoint"]["checkpoint_ns"] == ""
    assert state["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert state["parent_checkpoint"]["checkpoint_id"] and state["created_at"]
    assert sdk.threads.get(thread_id)["values"]["word_count"] == 2

    history = sdk.threads.get_history(thread_id, limit=100)
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert len(history) >= 4  # input, normalize, count, summarize
    assert [h["checkpoint"]["checkpoint_id"] for h in sdk.threads.get_history(thread_id, limit=2)] == \
        [h["checkpoint"]["checkpoint_id"] for h in history[:2]]
    older = sdk.threads.get_history(thread_id, limit=100, before=history[0]["checkpoint"])
    assert [h["checkpoint"]["checkpoint_id"] for h in older] == [h["checkpoint"]["checkpoint_id"] for h in history[1:]]
    first = history[-1]
    at = sdk.threads.get_state(thread_id, checkpoint_id=first["checkpoint"]["checkpoint_id"])
    assert at["checkpoint"]["checkpoint_id"] == first["checkpoint"]["checkpoint_id"]
    at_post = sdk.threads.get_state(thread_id, checkpoint=first["checkpoint"])
    with pytest.raises(NotFoundError):
        sdk.threads.get_state(thread_id, checkpoint_id=str(uuid.uuid4()))
    assert at_post["checkpoint"]["checkpoint_id"] == first["checkpoint"]["checkpoint_id"]

    written = sdk.threads.update_state(thread_id, {"summary": "edited by hand"}, as_node="summarize")
    assert written["checkpoint"]["thread_id"] == thread_id and written["checkpoint"]["checkpoint_id"]
    after = sdk.threads.get_state(thread_id)
    assert after["values"]["summary"] == "edited by hand"
    assert after["checkpoint"]["checkpoint_id"] == written["checkpoint"]["checkpoint_id"]
    assert after["parent_checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]


def _run_on(gw, graph: str, thread_id: str, value: dict, status: int) -> str:
    client = api_client(gw.api_address, gw.token)
    try:
        run = client.runs.CreateRun(run_service_pb2.CreateRunRequest(graph=graph, thread_id=thread_id,
                                                                     input=struct(value))).run
        wait_for(lambda: client.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id)).run.status == status,
                 timeout=60)
        return run.run_id
    finally:
        client.close()


def test_interrupted_threads_are_listed_with_their_interrupts(gw, sdk):
    """agent-inbox's listing: interrupted threads, and each one's interrupt values."""
    marker = uuid.uuid4().hex
    thread = sdk.threads.create(metadata={"inbox": marker})
    _run_on(gw, "approval_workflow", thread["thread_id"], {"action": "refund", "target": "order-7", "amount": 5},
            run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL)
    (listed,) = sdk.threads.search(metadata={"inbox": marker}, status="interrupted")
    assert listed["status"] == "interrupted"
    values = [i for group in listed["interrupts"].values() for i in group]
    assert len(values) == 1 and values[0]["id"] and values[0]["value"]["kind"] == "approval"
    assert values[0]["value"]["proposed_change"]["target"] == "order-7"
    state = sdk.threads.get_state(thread["thread_id"])
    assert state["next"] == ["review"]
    assert [i["id"] for i in state["interrupts"]] == [values[0]["id"]]
    (task,) = state["tasks"]
    assert task["name"] == "review" and [i["id"] for i in task["interrupts"]] == [values[0]["id"]]
    assert sdk.threads.count(metadata={"inbox": marker}, status="interrupted") == 1
    # Deleting it cancels the waiting run first, then purges the thread.
    sdk.threads.delete(thread["thread_id"])
    with pytest.raises(NotFoundError):
        sdk.threads.get(thread["thread_id"])


def test_state_of_an_unknown_thread_is_404(http):
    assert http.get(f"/threads/{uuid.uuid4()}/state").status_code == 404
    thread = http.post("/threads", json={}).json()
    assert http.get(f"/threads/{thread['thread_id']}/state/{uuid.uuid4()}").status_code == 404
    assert http.post(f"/threads/{uuid.uuid4()}/history", json={}).status_code == 404


# -- crons -----------------------------------------------------------------------------------


def test_crons_create_search_update_delete(gw, sdk, http):
    marker = uuid.uuid4().hex
    cron = sdk.crons.create("tiny", schedule="0 3 * * *", input={"text": "nightly"},
                            metadata={"marker": marker})
    assert cron["assistant_id"] == system_assistant_id("tiny") and cron["thread_id"] is None
    assert cron["schedule"] == "0 3 * * *" and cron["enabled"] is True and cron["next_run_date"]
    assert cron["on_run_completed"] == "delete" and cron["payload"]["input"] == {"text": "nightly"}
    thread = sdk.threads.create()
    on_thread = sdk.crons.create_for_thread(thread["thread_id"], "tiny", schedule="30 4 * * *",
                                            input={"text": "x"}, metadata={"marker": marker})
    assert on_thread["thread_id"] == thread["thread_id"] and on_thread["on_run_completed"] is None

    mine = sdk.crons.search(metadata={"marker": marker}, sort_by="created_at", sort_order="asc")
    assert [c["cron_id"] for c in mine] == [cron["cron_id"], on_thread["cron_id"]]
    assert [c["cron_id"] for c in sdk.crons.search(thread_id=thread["thread_id"])] == [on_thread["cron_id"]]
    assert sdk.crons.count(metadata={"marker": marker}) == 2
    assert sdk.crons.count(assistant_id="tiny", metadata={"marker": marker}) == 2

    paused = sdk.crons.update(cron["cron_id"], enabled=False, schedule="0 5 * * *")
    assert paused["enabled"] is False and paused["schedule"] == "0 5 * * *"
    assert http.get(f"/runs/crons/{cron['cron_id']}").json()["enabled"] is False
    assert [c["cron_id"] for c in sdk.crons.search(metadata={"marker": marker}, enabled=False)] == [cron["cron_id"]]

    sdk.crons.delete(cron["cron_id"])
    sdk.crons.delete(on_thread["cron_id"])
    assert http.get(f"/runs/crons/{cron['cron_id']}").status_code == 404
    assert sdk.crons.count(metadata={"marker": marker}) == 0


def _fire_now(gw, cron_id: str) -> run_pb2.Run:
    """The cron's schedule fired now over gRPC (what the scheduler does at a scheduled time),
    its run followed to its rest."""
    client = api_client(gw.api_address, gw.token)
    try:
        run = client.schedules.RunScheduleNow(schedule_service_pb2.RunScheduleNowRequest(schedule_id=cron_id),
                                              timeout=TIMEOUT).run
        resting = {run_pb2.RUN_STATUS_COMPLETED, run_pb2.RUN_STATUS_FAILED}
        wait_for(lambda: client.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id)).run.status in resting,
                 TIMEOUT, message="the cron's run to end")
        return client.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id)).run
    finally:
        client.close()


def test_a_crons_config_context_and_interrupts_reach_its_runs_under_its_assistants(gw, sdk, http):
    assistant = sdk.assistants.create("chat", config={"configurable": {"reply_prefix": "> "}}, name="prefixed chat")
    thread = sdk.threads.create()
    said = {"messages": [{"role": "user", "content": "hi"}]}
    cron = sdk.crons.create_for_thread(thread["thread_id"], assistant["assistant_id"], schedule="0 3 * * *",
                                       input=said, context={"user_name": "Ann"}, config={"tags": ["nightly"]},
                                       stream_mode=["values", "messages-tuple"])
    assert cron["assistant_id"] == assistant["assistant_id"]
    payload = cron["payload"]
    # The assistant's config applies under the cron's own (its configurable stands in for its context).
    assert payload["config"] == {"configurable": {"reply_prefix": "> "}, "tags": ["nightly"]}
    assert payload["context"] == {"reply_prefix": "> ", "user_name": "Ann"}
    assert payload["stream_mode"] == ["values", "messages-tuple"] and payload["input"] == said
    assert http.get(f"/runs/crons/{cron['cron_id']}").json()["payload"] == payload

    run = _fire_now(gw, cron["cron_id"])
    assert run.status == run_pb2.RUN_STATUS_COMPLETED and list(run.options.tags) == ["nightly"]
    assert list(run.options.stream_modes) == ["values", "messages"]
    assert sdk.threads.get_state(thread["thread_id"])["values"]["messages"][-1]["content"] == "> Ann, you said: hi"

    # A patch replaces the parts it names; the others stay (the assistant's applies again).
    patched = sdk.crons.update(cron["cron_id"], interrupt_before=["chat"], context={"user_name": "Bob"})
    assert patched["payload"]["interrupt_before"] == ["chat"]
    assert patched["payload"]["context"] == {"reply_prefix": "> ", "user_name": "Bob"}
    assert patched["payload"]["config"] == payload["config"] and patched["payload"]["stream_mode"] == \
        payload["stream_mode"]
    run = _fire_now(gw, cron["cron_id"])
    assert list(run.options.interrupt_before) == ["chat"] and run.options.context["user_name"] == "Bob"
    assert sdk.threads.get_state(thread["thread_id"])["next"] == ["chat"]  # stopped before the node
    cleared = http.patch(f"/runs/crons/{cron['cron_id']}", json={"interrupt_before": None, "stream_mode": None})
    assert cleared.status_code == 200, cleared.text
    assert "interrupt_before" not in cleared.json()["payload"] and "stream_mode" not in cleared.json()["payload"]
    sdk.crons.delete(cron["cron_id"])
    sdk.assistants.delete(assistant["assistant_id"])


def test_crons_refuse_bad_run_options_by_name(sdk):
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.crons.create("tiny", schedule="0 3 * * *", input={"text": "x"}, interrupt_before=["nope"])
    assert "nope" in refused.value.response.json()["detail"]  # the api's UNKNOWN_NODE, as for a run
    with pytest.raises(UnprocessableEntityError) as refused:
        sdk.crons.create("tiny", schedule="0 3 * * *", input={"text": "x"}, stream_mode="nope")
    assert "'stream_mode'" in refused.value.response.json()["detail"]
    with pytest.raises(BadRequestError):  # the reference's rule for runs: context replaces configurable
        sdk.crons.create("tiny", schedule="0 3 * * *", config={"configurable": {"x": 1}}, context={"y": 2})
    with pytest.raises(NotFoundError):
        sdk.crons.create_for_thread(str(uuid.uuid4()), "tiny", schedule="0 3 * * *")


# -- store -----------------------------------------------------------------------------------


def test_store_put_get_search_namespaces_delete(gw):
    top = f"users-{uuid.uuid4().hex[:8]}"

    async def work(client):
        await client.store.put_item([top, "prefs"], "theme", {"color": "dark", "size": 3})
        await client.store.put_item([top, "prefs"], "lang", {"code": "fr"})
        await client.store.put_item([top, "notes"], "n1", {"text": "hello"}, ttl=60)
        item = await client.store.get_item([top, "prefs"], "theme")
        found = await client.store.search_items([top], filter={"color": "dark"})
        everything = await client.store.search_items([top], limit=10)
        namespaces = await client.store.list_namespaces(prefix=[top])
        await client.store.delete_item([top, "prefs"], "theme")
        gone = await client.store.get_item([top, "prefs"], "theme")
        return item, found, everything, namespaces, gone

    item, found, everything, namespaces, gone = run_async(gw, work)
    assert item["namespace"] == [top, "prefs"] and item["key"] == "theme"
    assert item["value"] == {"color": "dark", "size": 3} and item["created_at"] and item["updated_at"]
    assert [i["key"] for i in found["items"]] == ["theme"]
    assert {i["key"] for i in everything["items"]} == {"theme", "lang", "n1"}
    assert sorted(map(tuple, namespaces["namespaces"])) == [(top, "notes"), (top, "prefs")]
    assert gone is None


def test_store_checks_namespaces_and_refuses_semantic_search(http):
    dotted = http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}})
    assert dotted.status_code == 422 and "without periods" in dotted.json()["detail"]
    semantic = http.post("/store/items/search", json={"namespace_prefix": ["a"], "query": "cats"})
    assert semantic.status_code == 422 and "'query'" in semantic.json()["detail"]
    assert http.get("/store/items", params={"namespace": "a"}).status_code == 400
