"""Assistants: /assistants create, get, patch, delete, search, count, and a graph's
drawing and schemas (/graph, /schemas, /subgraphs), over AssistantService and
GraphService.DescribeGraph. A graph name works wherever an assistant id does (that
graph's system assistant).

graphmesh keeps an assistant's latest version only: /versions lists that one, and
/latest accepts only its number."""

from __future__ import annotations

from google.protobuf import field_mask_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphmesh.v1 import assistant_service_pb2 as pb
from graphmesh.v1 import graph_service_pb2
from services.gateway.context import CALL_TIMEOUT
from services.gateway.errors import HTTPError
from services.gateway.jsonio import (
    INT_MAX,
    get_dict,
    get_enum,
    get_int,
    get_str,
    json_response,
    pagination_headers,
    plain,
    query_bool,
    read_json,
    search_page,
    to_struct,
)
from services.gateway.lookups import delete_thread, gateway_of, get_assistant, thread_ids_with_metadata
from services.gateway.shapes import ASSISTANT_FIELDS, assistant_json, select_fields

IF_EXISTS = {"raise": pb.ASSISTANT_IF_EXISTS_RAISE, "do_nothing": pb.ASSISTANT_IF_EXISTS_DO_NOTHING}
SORT_BY = {"assistant_id": pb.ASSISTANT_SORT_BY_ASSISTANT_ID, "graph_id": pb.ASSISTANT_SORT_BY_GRAPH,
           "name": pb.ASSISTANT_SORT_BY_NAME, "created_at": pb.ASSISTANT_SORT_BY_CREATED_AT,
           "updated_at": pb.ASSISTANT_SORT_BY_UPDATED_AT}
SCHEMA_KEYS = ("input_schema", "output_schema", "state_schema", "config_schema", "context_schema")
# Editable through PATCH: body field -> Assistant field.
PATCHABLE = {"graph_id": "graph", "name": "name", "description": "description", "config": "config",
             "context": "context", "metadata": "metadata"}


def _check_config(body: dict) -> None:
    config, context = get_dict(body, "config"), get_dict(body, "context")
    if config and config.get("configurable") and context:
        # The reference server's rule: context replaces configurable (LangGraph 0.6).
        raise HTTPError(400, "Cannot specify both configurable and context. Prefer setting context alone.")


async def create_assistant(request: Request):
    body = await read_json(request, required=("graph_id",))
    _check_config(body)
    message = pb.CreateAssistantRequest(
        assistant_id=get_str(body, "assistant_id", ""), graph=get_str(body, "graph_id"),
        name=get_str(body, "name", "") or "Untitled", description=get_str(body, "description", ""),
        if_exists=IF_EXISTS[get_enum(body, "if_exists", tuple(IF_EXISTS), "raise")])
    for field in ("config", "context", "metadata"):
        value = get_dict(body, field)
        if value is not None:
            getattr(message, field).CopyFrom(to_struct(value, field))
    gw = gateway_of(request)
    reply = await gw.assistants.CreateAssistant(message, timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response(assistant_json(reply.assistant))


async def read_assistant(request: Request):
    return json_response(assistant_json(await get_assistant(request, request.path_params["assistant_id"])))


async def patch_assistant(request: Request):
    body = await read_json(request)
    _check_config(body)
    assistant_id = request.path_params["assistant_id"]
    changes = pb.Assistant()
    paths = []
    for field, target in PATCHABLE.items():
        if body.get(field) is None:
            continue
        if field in ("config", "context", "metadata"):
            value = get_dict(body, field)
            if field == "metadata":  # merged into the current metadata, as the reference does
                current = await get_assistant(request, assistant_id)
                value = {**(plain(current.metadata) if current.HasField("metadata") else {}), **value}
            getattr(changes, target).CopyFrom(to_struct(value, field))
        else:
            setattr(changes, target, get_str(body, field))
        paths.append(target)
    gw = gateway_of(request)
    if not paths:  # nothing to change: the assistant as it is
        return json_response(assistant_json(await get_assistant(request, assistant_id)))
    reply = await gw.assistants.UpdateAssistant(
        pb.UpdateAssistantRequest(assistant_id=assistant_id, assistant=changes,
                                  update_mask=field_mask_pb2.FieldMask(paths=paths)),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response(assistant_json(reply.assistant))


async def delete_assistant(request: Request):
    assistant_id = request.path_params["assistant_id"]
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    if not query_bool(request, "delete_threads"):
        await gw.assistants.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=assistant_id),
                                            timeout=CALL_TIMEOUT, metadata=md)
        return Response(status_code=204)
    # Threads go only once the assistant could be deleted (the api refuses a system assistant,
    # 409, and a caller who may not): the assistant first, then its threads. A thread delete
    # failing then leaves that thread (and those after it) to DELETE /threads/{id}.
    assistant = await get_assistant(request, assistant_id)
    await gw.assistants.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=assistant.assistant_id),
                                        timeout=CALL_TIMEOUT, metadata=md)
    for thread_id in await thread_ids_with_metadata(request, {"assistant_id": assistant.assistant_id}):
        await delete_thread(request, thread_id)
    return Response(status_code=204)


def _search_filters(body: dict) -> dict:
    filters: dict = {"graph": get_str(body, "graph_id", ""), "name": get_str(body, "name", "")}
    metadata = get_dict(body, "metadata")
    if metadata:
        filters["metadata"] = to_struct(metadata, "metadata")
    return filters


async def search_assistants(request: Request):
    body = await read_json(request)
    page = search_page(body, sort_fields=SORT_BY, default_sort="created_at", fields=ASSISTANT_FIELDS)
    gw = gateway_of(request)
    reply = await gw.assistants.ListAssistants(
        pb.ListAssistantsRequest(limit=page.limit, offset=page.offset, sort_by=SORT_BY[page.sort_by],
                                 ascending=page.ascending, **_search_filters(body)),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    items = [select_fields(assistant_json(a), page.select) for a in reply.assistants]
    headers = pagination_headers(len(items), page.offset, page.offset + page.limit if reply.has_more else None)
    return json_response(items, headers=headers)


async def count_assistants(request: Request):
    body = await read_json(request)
    gw = gateway_of(request)
    reply = await gw.assistants.CountAssistants(pb.CountAssistantsRequest(**_search_filters(body)),
                                                timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response(reply.count)


def _xray(request: Request) -> int:
    """?xray=true (every level: -1), false (0) or a positive depth, as the reference reads it."""
    raw = request.query_params.get("xray")
    if not raw or raw in ("false", "False"):
        return 0
    if raw in ("true", "True"):
        return -1
    try:
        depth = int(raw)
    except ValueError:
        raise HTTPError(422, "Invalid xray value") from None
    if not 0 < depth <= INT_MAX:
        raise HTTPError(422, "Invalid xray value")
    return depth


async def _describe(request: Request, **fields) -> tuple[pb.Assistant, graph_service_pb2.DescribeGraphResponse]:
    assistant = await get_assistant(request, request.path_params["assistant_id"])
    gw = gateway_of(request)
    reply = await gw.graphs.DescribeGraph(graph_service_pb2.DescribeGraphRequest(graph=assistant.graph, **fields),
                                          timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return assistant, reply


def _schemas_json(schemas: graph_service_pb2.GraphSchemas) -> dict:
    return {key: plain(getattr(schemas, key)) if schemas.HasField(key) else None for key in SCHEMA_KEYS}


async def assistant_graph(request: Request):
    _, reply = await _describe(request, xray=_xray(request))
    drawable = plain(reply.drawable) if reply.HasField("drawable") else {"nodes": [], "edges": []}
    for node in drawable.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)  # as the reference: the node's Python path is not shown
    return json_response(drawable)


async def assistant_schemas(request: Request):
    assistant, reply = await _describe(request)
    return json_response({"graph_id": assistant.graph, **_schemas_json(reply.schemas)})


async def assistant_subgraphs(request: Request):
    _, reply = await _describe(request, subgraph_namespace=request.path_params.get("namespace", ""),
                               recurse=query_bool(request, "recurse"))
    return json_response({namespace: _schemas_json(s) for namespace, s in sorted(reply.subgraphs.items())})


async def assistant_versions(request: Request):
    """The versions kept: graphmesh keeps the latest only."""
    body = await read_json(request)
    metadata = get_dict(body, "metadata") or {}
    offset = get_int(body, "offset", 0, minimum=0)
    assistant = await get_assistant(request, request.path_params["assistant_id"])
    current = assistant_json(assistant)
    matches = all(current["metadata"].get(k) == v for k, v in metadata.items())
    return json_response([current] if matches and offset == 0 else [])


async def set_latest_version(request: Request):
    body = await read_json(request, required=("version",))
    version = get_int(body, "version", minimum=1)
    assistant = await get_assistant(request, request.path_params["assistant_id"])
    if version != (assistant.version or 1):
        raise HTTPError(404, f"version {version} of assistant {assistant.assistant_id} is not kept: graphmesh keeps "
                             f"an assistant's latest version only (version {assistant.version or 1})")
    return json_response(assistant_json(assistant))


def routes() -> list[BaseRoute]:
    return [
        Route("/assistants", create_assistant, methods=["POST"]),
        Route("/assistants/search", search_assistants, methods=["POST"]),
        Route("/assistants/count", count_assistants, methods=["POST"]),
        Route("/assistants/{assistant_id}/latest", set_latest_version, methods=["POST"]),
        Route("/assistants/{assistant_id}/versions", assistant_versions, methods=["POST"]),
        Route("/assistants/{assistant_id}", read_assistant, methods=["GET"]),
        Route("/assistants/{assistant_id}", patch_assistant, methods=["PATCH"]),
        Route("/assistants/{assistant_id}", delete_assistant, methods=["DELETE"]),
        Route("/assistants/{assistant_id}/graph", assistant_graph, methods=["GET"]),
        Route("/assistants/{assistant_id}/schemas", assistant_schemas, methods=["GET"]),
        Route("/assistants/{assistant_id}/subgraphs", assistant_subgraphs, methods=["GET"]),
        Route("/assistants/{assistant_id}/subgraphs/{namespace}", assistant_subgraphs, methods=["GET"]),
    ]
