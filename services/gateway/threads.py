"""Threads and their state: /threads create, get, patch, delete, search, count; a thread's
state (latest, at a checkpoint), state updates and history. Over ThreadService and
RunService (GetThreadState; a delete cancels the thread's runs, then PurgeThread).

Threads carry graphmesh's status (idle, busy, interrupted, error), kept in step with its
runs and approvals by the api, and the interrupts its pending approvals wait on."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphmesh.v1 import run_service_pb2
from graphmesh.v1 import thread_service_pb2 as pb
from services.gateway.errors import HTTPError
from services.gateway.jsonio import (
    get_bool,
    get_dict,
    get_enum,
    get_int,
    get_str,
    get_str_list,
    json_response,
    pagination_headers,
    query_int,
    read_json,
    search_page,
    to_struct,
    to_value,
)
from services.gateway.lookups import (
    CALL_TIMEOUT,
    RESTING_AT_INTERRUPT,
    cancel_thread_runs,
    delete_thread,
    gateway_of,
    get_thread,
)
from services.gateway.shapes import THREAD_FIELDS, THREAD_STATUS_OF, select_fields, state_json, thread_json

IF_EXISTS = {"raise": pb.IF_EXISTS_RAISE, "do_nothing": pb.IF_EXISTS_DO_NOTHING}
SORT_BY = {"thread_id": pb.THREAD_SORT_BY_THREAD_ID, "status": pb.THREAD_SORT_BY_STATUS,
           "created_at": pb.THREAD_SORT_BY_CREATED_AT, "updated_at": pb.THREAD_SORT_BY_UPDATED_AT,
           # graphmesh does not track state updates apart from the thread's own.
           "state_updated_at": pb.THREAD_SORT_BY_UPDATED_AT}
MAX_HISTORY = 1000


def _no_ttl(body: dict) -> None:
    if body.get("ttl") is not None:
        raise HTTPError(422, "'ttl' is not supported: graphmesh threads do not expire on their own "
                             "(retention sweeps finished threads; see docs/langgraph-api.md)")


async def create_thread(request: Request):
    body = await read_json(request)
    _no_ttl(body)
    if body.get("supersteps"):
        raise HTTPError(422, "'supersteps' is not supported: create the thread, then POST /threads/{thread_id}/state")
    message = pb.CreateThreadRequest(thread_id=get_str(body, "thread_id", ""),
                                     if_exists=IF_EXISTS[get_enum(body, "if_exists", tuple(IF_EXISTS), "raise")])
    metadata = get_dict(body, "metadata")
    if metadata:
        message.metadata.CopyFrom(to_struct(metadata, "metadata"))
    gw = gateway_of(request)
    reply = await gw.threads.CreateThread(message, timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response(thread_json(reply.thread))


async def read_thread(request: Request):
    return json_response(thread_json(await get_thread(request, request.path_params["thread_id"],
                                                      include_values=True)))


async def patch_thread(request: Request):
    body = await read_json(request)
    _no_ttl(body)
    metadata = get_dict(body, "metadata") or {}
    gw = gateway_of(request)
    # No update mask: the keys given are merged into the metadata (LangGraph's PATCH).
    reply = await gw.threads.UpdateThread(
        pb.UpdateThreadRequest(thread_id=request.path_params["thread_id"], metadata=to_struct(metadata, "metadata")),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    if request.headers.get("prefer") == "return=minimal":
        return Response(status_code=204)
    return json_response(thread_json(reply.thread, with_values=False))


async def remove_thread(request: Request):
    await delete_thread(request, request.path_params["thread_id"])
    return Response(status_code=204)


def _filters(body: dict) -> dict:
    filters: dict = {}
    for field in ("metadata", "values"):
        value = get_dict(body, field)
        if value:
            filters[field] = to_struct(value, field)
    status = get_enum(body, "status", tuple(THREAD_STATUS_OF))
    if status:
        filters["status"] = THREAD_STATUS_OF[status]
    return filters


async def search_threads(request: Request):
    body = await read_json(request)
    page = search_page(body, sort_fields=SORT_BY, default_sort="updated_at", fields=THREAD_FIELDS)
    if body.get("extract") is not None:
        raise HTTPError(422, "'extract' is not supported by graphmesh's gateway; use 'select'")
    with_values = not page.select or "values" in page.select
    gw = gateway_of(request)
    reply = await gw.threads.ListThreads(
        pb.ListThreadsRequest(thread_ids=get_str_list(body, "ids") or [], limit=page.limit, offset=page.offset,
                              sort_by=SORT_BY[page.sort_by], ascending=page.ascending, include_values=with_values,
                              **_filters(body)),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    items = [select_fields(thread_json(t, with_values=with_values), page.select) for t in reply.threads]
    headers = pagination_headers(len(items), page.offset, page.offset + page.limit if reply.has_more else None)
    return json_response(items, headers=headers)


async def count_threads(request: Request):
    body = await read_json(request)
    gw = gateway_of(request)
    reply = await gw.threads.CountThreads(pb.CountThreadsRequest(**_filters(body)), timeout=CALL_TIMEOUT,
                                          metadata=gw.call_metadata(request))
    return json_response(reply.count)


# -- state ---------------------------------------------------------------------------


async def _state(request: Request, thread_id: str, checkpoint_id: str = "") -> dict:
    """The thread's state at a checkpoint (the latest when none is named), as LangGraph's
    StateSnapshot: RunService.GetThreadState's snapshot (tasks with their interrupts and
    approvals). A thread that never ran has none: empty state, as the reference answers."""
    gw = gateway_of(request)
    reply = await gw.runs.GetThreadState(
        run_service_pb2.GetThreadStateRequest(thread_id=thread_id, checkpoint_id=checkpoint_id),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    snapshot = reply.snapshot if reply.HasField("snapshot") and reply.snapshot.checkpoint_id else None
    if snapshot is None and checkpoint_id:
        raise HTTPError(404, f"thread {thread_id} has no checkpoint {checkpoint_id}")
    return state_json(thread_id, snapshot)


def _checkpoint_id(body: dict, field: str = "checkpoint") -> str:
    """A checkpoint named as {"checkpoint_id": ...} (LangGraph's Checkpoint); only the root
    namespace is served."""
    checkpoint = get_dict(body, field) or {}
    if checkpoint.get("checkpoint_ns"):
        raise HTTPError(422, f"'{field}.checkpoint_ns' is not supported: subgraph checkpoints are read "
                             "through the parent's state")
    value = checkpoint.get("checkpoint_id")
    if value is not None and not isinstance(value, str):
        raise HTTPError(422, f"'{field}.checkpoint_id' must be a string")
    return value or ""


async def read_state(request: Request):
    return json_response(await _state(request, request.path_params["thread_id"]))


async def read_state_at(request: Request):
    return json_response(await _state(request, request.path_params["thread_id"],
                                      request.path_params["checkpoint_id"]))


async def read_state_at_post(request: Request):
    body = await read_json(request, required=("checkpoint",))
    get_bool(body, "subgraphs")
    return json_response(await _state(request, request.path_params["thread_id"], _checkpoint_id(body)))


async def update_state(request: Request):
    thread_id = request.path_params["thread_id"]
    body = await read_json(request)
    checkpoint_id = get_str(body, "checkpoint_id", "") or _checkpoint_id(body)
    as_node = get_str(body, "as_node", "")
    gw = gateway_of(request)
    values = to_value(body.get("values"), "values")  # 422 before anything changes
    if as_node == "__end__":
        # Ending the thread drops the interrupt it waits on (agent-inbox's "mark as resolved"):
        # the run resting there is cancelled, its approvals with it (recorded as CANCELLED).
        # What can be checked first is (the body above; the thread exists and the caller sees
        # it); what only UpdateThreadState checks (that the caller may change the thread, the
        # values against the graph's schema) comes after the cancel: docs/langgraph-api.md.
        await get_thread(request, thread_id)
        await cancel_thread_runs(request, thread_id, statuses=RESTING_AT_INTERRUPT,
                                 reason="the thread was ended (as_node __end__, LangGraph HTTP API)")
    # A thread that never ran takes the update under its metadata's graph_id (the api reads it).
    reply = await gw.threads.UpdateThreadState(
        pb.UpdateThreadStateRequest(thread_id=thread_id, values=values, as_node=as_node, checkpoint_id=checkpoint_id),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    checkpoint = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": reply.checkpoint_id}
    # "configurable" and "checkpoint_id" are the reference's deprecated copies.
    return json_response({"checkpoint": checkpoint, "configurable": checkpoint, "checkpoint_id": reply.checkpoint_id})


async def _history(request: Request, *, limit: int, before: str, metadata: dict | None, checkpoint_id: str):
    thread_id = request.path_params["thread_id"]
    message = pb.GetThreadHistoryRequest(thread_id=thread_id, limit=limit, before_checkpoint_id=before,
                                         checkpoint_id=checkpoint_id)
    if metadata:
        message.metadata.CopyFrom(to_struct(metadata, "metadata"))
    gw = gateway_of(request)
    reply = await gw.threads.GetThreadHistory(message, timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response([state_json(thread_id, s) for s in reply.snapshots])


async def history_get(request: Request):
    # The reference's GET defaults to one state (POST, as the SDKs send it, to ten).
    return await _history(request, limit=query_int(request, "limit", 1, minimum=1, maximum=MAX_HISTORY),
                          before=request.query_params.get("before", ""), metadata=None, checkpoint_id="")


async def history_post(request: Request):
    body = await read_json(request)
    before = body.get("before")
    if isinstance(before, dict):
        before = _checkpoint_id(body, "before")
    elif before is not None and not isinstance(before, str):
        raise HTTPError(422, "'before' must be a checkpoint id or a checkpoint object")
    return await _history(request, limit=get_int(body, "limit", 10, minimum=1, maximum=MAX_HISTORY),
                          before=before or "", metadata=get_dict(body, "metadata"),
                          checkpoint_id=_checkpoint_id(body))


async def not_supported(request: Request):
    raise HTTPError(501, f"{request.method} {request.url.path} is not supported by graphmesh's gateway "
                         "(docs/langgraph-api.md lists what is served)")


def routes() -> list[BaseRoute]:
    return [
        Route("/threads", create_thread, methods=["POST"]),
        Route("/threads/search", search_threads, methods=["POST"]),
        Route("/threads/count", count_threads, methods=["POST"]),
        Route("/threads/prune", not_supported, methods=["POST"]),
        Route("/threads/{thread_id}", read_thread, methods=["GET"]),
        Route("/threads/{thread_id}", patch_thread, methods=["PATCH"]),
        Route("/threads/{thread_id}", remove_thread, methods=["DELETE"]),
        Route("/threads/{thread_id}/copy", not_supported, methods=["POST"]),
        Route("/threads/{thread_id}/state", read_state, methods=["GET"]),
        Route("/threads/{thread_id}/state", update_state, methods=["POST"]),
        Route("/threads/{thread_id}/state/checkpoint", read_state_at_post, methods=["POST"]),
        Route("/threads/{thread_id}/state/{checkpoint_id}", read_state_at, methods=["GET"]),
        Route("/threads/{thread_id}/history", history_get, methods=["GET"]),
        Route("/threads/{thread_id}/history", history_post, methods=["POST"]),
    ]

