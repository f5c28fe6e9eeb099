"""The gateway's HTTP edges without a mesh: credentials turned into gRPC metadata, gRPC
statuses into the reference server's {"detail"} errors, request bodies checked field by
field, JSON out (datetimes, Struct numbers), pagination headers, CORS. The app is built on
a channel to an address nothing listens on: only what answers before any RPC is checked."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from starlette.responses import JSONResponse

from graphmesh.config import Settings
from graphmesh.v1 import thread_pb2
from services.gateway.app import create_app
from services.gateway.context import Gateway
from services.gateway.errors import HTTP_STATUS, HTTPError, http_status
from services.gateway.jsonio import dumps, iso, pagination_headers, plain
from services.gateway.shapes import state_json, thread_json


class Client:
    """Requests to a gateway app built, as the server builds it, inside the loop that serves
    it (grpc.aio channels belong to the loop they are made in)."""

    def __init__(self, extra_routes=()) -> None:
        self._extra = extra_routes

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def main():
            gateway = Gateway(Settings(api_address="127.0.0.1:9", gateway_cors_origins="*"))
            app = create_app(gateway)
            for route_path, endpoint in self._extra:
                app.add_route(route_path, endpoint)
            app.state.gateway = gateway
            transport = httpx.ASGITransport(app=app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
                    return await c.request(method, path, **kwargs)
            finally:
                await gateway.close()
        return asyncio.run(main())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def options(self, path, **kw):
        return self.request("OPTIONS", path, **kw)


@pytest.fixture()
def client():
    return Client()


def _metadata(headers: dict) -> dict:
    async def probe(request):
        return JSONResponse(dict(request.app.state.gateway.call_metadata(request)))

    return Client([("/probe", probe)]).get("/probe", headers=headers).json()


def test_the_callers_credentials_become_the_apis_bearer_metadata():
    assert _metadata({"X-Api-Key": "gm_abc_def"}) == {"authorization": "Bearer gm_abc_def"}
    assert _metadata({"Authorization": "Bearer eyJ.a.b"}) == {"authorization": "Bearer eyJ.a.b"}
    # Authorization wins over X-Api-Key; another scheme is passed on for the api to refuse.
    assert _metadata({"Authorization": "Basic x", "X-Api-Key": "k"}) == {"authorization": "Basic x"}
    assert _metadata({}) == {}
    traced = _metadata({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert traced == {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}


def test_grpc_statuses_map_to_the_reference_http_statuses():
    expected = {"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "FAILED_PRECONDITION": 409, "INVALID_ARGUMENT": 422,
                "OUT_OF_RANGE": 422, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "UNIMPLEMENTED": 501}
    assert {code.name: status for code, status in HTTP_STATUS.items()} == expected
    assert http_status(grpc.StatusCode.INTERNAL) == 500 and http_status(grpc.StatusCode.UNKNOWN) == 500


def test_errors_are_detail_json(client):
    assert client.get("/ok").json() == {"ok": True}
    assert client.get("/nope").json() == {"detail": "Not Found"}
    wrong_method = client.delete("/ok")
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"detail"}
    not_json = client.post("/threads", content=b"{", headers={"Content-Type": "application/json"})
    assert (not_json.status_code, not_json.json()) == (422, {"detail": "Invalid JSON in request body"})
    array = client.post("/threads/search", json=[1])
    assert array.status_code == 422 and "JSON object" in array.json()["detail"]
    for body, field in (({"limit": "10"}, "'limit'"), ({"limit": 0}, "'limit'"), ({"sort_order": "up"}, "'sort_order'"),
                        ({"metadata": [1]}, "'metadata'"), ({"ids": [1]}, "'ids'")):
        answer = client.post("/threads/search", json=body)
        assert answer.status_code == 422 and field in answer.json()["detail"], (body, answer.json())
    assert "graph_id" in client.post("/assistants", json={}).json()["detail"]
    assert client.get("/assistants/tiny/graph", params={"xray": "-1"}).json() == {"detail": "Invalid xray value"}


def test_an_unreachable_api_is_503_with_the_reason(client):
    answer = client.get("/assistants/tiny")
    assert answer.status_code == 503 and answer.json()["detail"]


def test_cors_exposes_the_headers_browser_clients_read(client):
    answer = client.get("/ok", headers={"Origin": "http://localhost:3000"})
    assert answer.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"content-location", "location", "x-pagination-next", "x-pagination-total"}
    preflight = client.options("/threads/search", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-api-key,last-event-id,content-type"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_pagination_headers_as_the_reference_server():
    assert pagination_headers(3, 0, None) == {"X-Pagination-Total": "3"}
    assert pagination_headers(10, 20, 30) == {"X-Pagination-Total": "31", "X-Pagination-Next": "30"}


def test_json_out_keeps_whole_numbers_and_timezones():
    struct = struct_pb2.Struct()
    struct.update({"n": 3, "x": 1.5, "nested": {"list": [1, 2.25]}})
    assert plain(struct) == {"n": 3, "x": 1.5, "nested": {"list": [1, 2.25]}}
    assert iso(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05+00:00"
    assert iso(timestamp_pb2.Timestamp()) is None
    ts = timestamp_pb2.Timestamp(seconds=1_767_225_600)
    assert dumps({"at": ts, "when": datetime(2026, 1, 1, tzinfo=timezone.utc)}) == \
        '{"at":"2026-01-01T00:00:00+00:00","when":"2026-01-01T00:00:00+00:00"}'


def test_thread_and_state_shapes():
    thread = thread_pb2.Thread(thread_id="t1", status=thread_pb2.THREAD_STATUS_INTERRUPTED,
                               interrupts=[thread_pb2.ThreadInterrupt(interrupt_id="i1",
                                                                      value=struct_pb2.Value(string_value="ok?"))])
    shaped = thread_json(thread)
    assert shaped["status"] == "interrupted" and shaped["interrupts"] == {"i1": [{"value": "ok?", "id": "i1"}]}
    assert shaped["metadata"] == {} and shaped["values"] is None
    empty = state_json("t1", None)
    assert empty["values"] == {} and empty["checkpoint"] is None and empty["tasks"] == []
    snap = thread_pb2.ThreadSnapshot(checkpoint_id="c2", parent_checkpoint_id="c1", next=["review"],
                                     tasks=[thread_pb2.ThreadTask(task_id="k", name="review", checkpoint_ns="sub:k")])
    state = state_json("t1", snap)
    assert state["checkpoint"] == {"thread_id": "t1", "checkpoint_ns": "", "checkpoint_id": "c2",
                                   "checkpoint_map": {}}
    assert state["parent_checkpoint"]["checkpoint_id"] == "c1" and state["next"] == ["review"]
    assert state["tasks"][0]["checkpoint"] == {"thread_id": "t1", "checkpoint_ns": "sub:k"}


def test_last_event_id_positions():
    from services.gateway.sse import Position, parse_last_event_id
    assert parse_last_event_id(None) is None and parse_last_event_id("  ") is None
    assert parse_last_event_id("-1") is None  # the JS SDK's "from the start": metadata first
    assert parse_last_event_id("7") == Position(after=7)
    assert parse_last_event_id("7:1") == Position(after=6, skip=2)  # inside event 7, after its 2nd part
    for bad in ("x", "-2", "3:-1"):
        with pytest.raises(HTTPError):
            parse_last_event_id(bad)


HUGE = 10**400  # valid JSON, beyond a double


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/threads/search", {"offset": 2**32}, "'offset'"),
    ("POST", "/threads/search", {"limit": 10, "offset": 2**31}, "'offset'"),
    ("POST", "/assistants/search", {"offset": 2**40}, "'offset'"),
    ("POST", "/assistants/x/versions", {"offset": 2**40}, "'offset'"),
    ("POST", "/store/items/search", {"namespace_prefix": ["a"], "offset": 2**40}, "'offset'"),
    ("POST", "/store/namespaces", {"max_depth": 2**31}, "'max_depth'"),
    ("POST", "/threads/t1/history", {"limit": 2**40}, "'limit'"),
    ("POST", "/threads", {"metadata": {"n": HUGE}}, "'metadata'"),
    ("POST", "/threads/search", {"metadata": {"n": [HUGE]}}, "'metadata'"),
    ("POST", "/threads/search", {"values": {"n": {"m": -HUGE}}}, "'values'"),
    ("POST", "/threads/t1/state", {"values": {"n": HUGE}, "as_node": "__end__"}, "'values'"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {"n": HUGE}}, "'value'"),
    ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": HUGE}, "'ttl'"),
    ("POST", "/assistants", {"graph_id": "tiny", "metadata": {"n": HUGE}}, "'metadata'"),
])
def test_numbers_out_of_range_are_422_naming_the_field(client, method, path, body, field):
    answer = client.request(method, path, content=dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and field in answer.json()["detail"], (body, answer.status_code, answer.text)


def test_out_of_range_query_numbers_and_non_json_constants_are_422(client):
    assert client.get("/threads/t1/runs", params={"offset": str(2**40)}).status_code == 422
    assert client.get("/assistants/tiny/graph", params={"xray": str(2**40)}).json() == {"detail": "Invalid xray value"}
    nan = client.post("/threads/search", content=b'{"metadata": {"n": NaN}}', headers={"Content-Type": "application/json"})
    assert (nan.status_code, nan.json()) == (422, {"detail": "Invalid JSON in request body"})


def test_run_request_numbers_out_of_range_are_422_naming_the_field():
    from graphmesh.v1 import assistant_service_pb2
    from services.gateway.run_requests import create_run_request, parse_run_request
    assistant = assistant_service_pb2.Assistant(assistant_id="a1", graph="tiny")
    for body, field in (({"input": {"n": HUGE}}, "'input'"),
                        ({"input": {"n": 1}, "config": {"recursion_limit": 2**40}}, "'config.recursion_limit'"),
                        ({"input": None, "command": {"update": {"n": HUGE}}}, "'command.update'"),
                        ({"input": {}, "config": {"configurable": {"n": HUGE}}}, "'config.configurable'"),
                        ({"input": {}, "context": {"n": HUGE}}, "'context'")):
        with pytest.raises(HTTPError) as caught:
            create_run_request(parse_run_request({"assistant_id": "a1", **body}), assistant, "t1")
        assert caught.value.status == 422 and field in caught.value.detail, (body, caught.value.detail)
    from services.gateway.sse import parse_last_event_id
    for bad in (str(2**64), f"3:{2**40}"):
        with pytest.raises(HTTPError):
            parse_last_event_id(bad)
