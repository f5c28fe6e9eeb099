"""Long-term memory: /store/items put, get, delete, search and /store/namespaces, over
StoreService (LangGraph's Postgres store, the one graphs receive as their `store`).
Semantic search (`query`, `index`) is not served: the store has no embedding index."""

from __future__ import annotations

from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphmesh.v1 import store_service_pb2 as pb
from services.gateway.context import CALL_TIMEOUT
from services.gateway.errors import HTTPError
from services.gateway.jsonio import (
    get_dict,
    get_int,
    get_number,
    get_str,
    json_response,
    read_json,
    to_struct,
)
from services.gateway.lookups import gateway_of
from services.gateway.shapes import item_json


def _namespace(value: Any, field: str, *, required: bool = True) -> list[str]:
    """A namespace as the reference checks it: a list of non-empty labels without periods
    (a period separates labels in GET's ?namespace=a.b)."""
    if value is None and not required:
        return []
    if not isinstance(value, (list, tuple)):
        raise HTTPError(422, f"'{field}' must be a list of labels")
    for label in value:
        if not isinstance(label, str) or not label or "." in label:
            raise HTTPError(422, f"Namespace label {label!r} must be a non-empty string without periods")
    return list(value)


def _no_semantic(body: dict) -> None:
    if body.get("query"):
        raise HTTPError(422, "'query' (semantic search) is not supported: graphmesh's store has no embedding index; "
                             "use 'filter'")
    if body.get("index") not in (None, False):
        raise HTTPError(422, "'index' is not supported: graphmesh's store has no embedding index")


async def put_item(request: Request):
    body = await read_json(request, required=("key", "value"))
    _no_semantic(body)
    value = get_dict(body, "value")
    ttl = get_number(body, "ttl")
    if ttl is not None and ttl <= 0:
        raise HTTPError(422, "'ttl' must be a positive number of minutes (or null for the deployment's default)")
    gw = gateway_of(request)
    await gw.store.PutItem(pb.PutItemRequest(namespace=_namespace(body.get("namespace") or [], "namespace"),
                                             key=get_str(body, "key"), value=to_struct(value, "value"),
                                             ttl_minutes=ttl or 0.0),
                           timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return Response(status_code=204)


async def get_item(request: Request):
    namespace = _namespace(request.query_params.get("namespace", "").split("."), "namespace")
    key = request.query_params.get("key")
    if not key:
        raise HTTPError(400, "Key is required")
    refresh = request.query_params.get("refresh_ttl")
    gw = gateway_of(request)
    try:
        reply = await gw.store.GetItem(pb.GetItemRequest(namespace=namespace, key=key,
                                                         no_refresh_ttl=refresh is not None and refresh.lower() != "true"),
                                       timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return json_response(None)  # the reference answers null for an absent item
        raise
    return json_response(item_json(reply.item))


async def delete_item(request: Request):
    body = await read_json(request, required=("key",))
    gw = gateway_of(request)
    await gw.store.DeleteItem(pb.DeleteItemRequest(namespace=_namespace(body.get("namespace") or [], "namespace"),
                                                   key=get_str(body, "key")),
                              timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return Response(status_code=204)


async def search_items(request: Request):
    body = await read_json(request)
    _no_semantic(body)
    message = pb.SearchItemsRequest(namespace_prefix=_namespace(body.get("namespace_prefix") or [], "namespace_prefix"),
                                    limit=get_int(body, "limit", 10, minimum=1, maximum=1000),
                                    offset=get_int(body, "offset", 0, minimum=0))
    filter_ = get_dict(body, "filter")
    if filter_:
        message.filter.CopyFrom(to_struct(filter_, "filter"))
    gw = gateway_of(request)
    reply = await gw.store.SearchItems(message, timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    # "score" is the similarity of a semantic search, which is not served.
    return json_response({"items": [{**item_json(i), "score": None} for i in reply.items]})


async def list_namespaces(request: Request):
    body = await read_json(request)
    gw = gateway_of(request)
    reply = await gw.store.ListNamespaces(
        pb.ListNamespacesRequest(prefix=_namespace(body.get("prefix"), "prefix", required=False),
                                 suffix=_namespace(body.get("suffix"), "suffix", required=False),
                                 max_depth=get_int(body, "max_depth", 0, minimum=1) if body.get("max_depth") else 0,
                                 limit=get_int(body, "limit", 100, minimum=1, maximum=1000),
                                 offset=get_int(body, "offset", 0, minimum=0)),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return json_response({"namespaces": [list(n.path) for n in reply.namespaces]})


def routes() -> list[BaseRoute]:
    return [
        Route("/store/items", put_item, methods=["PUT"]),
        Route("/store/items", get_item, methods=["GET"]),
        Route("/store/items", delete_item, methods=["DELETE"]),
        Route("/store/items/search", search_items, methods=["POST"]),
        Route("/store/namespaces", list_namespaces, methods=["POST"]),
    ]
