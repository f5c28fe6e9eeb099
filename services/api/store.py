"""StoreService: long-term memory items (graphmesh/memory.py) as protos.

One store per deployment, shared by every caller with the submitter role and by every
graph's nodes (the rules table, graphmesh/auth/rules.py): namespaces are not scoped to the
caller. Struct carries every number as a double; whole numbers are stored as integers, so
a graph reading an item put through this service sees 3, not 3.0."""

from __future__ import annotations

from graphmesh.jsonvalues import from_proto, to_struct
from graphmesh.memory import Memory
from graphmesh.messages import timestamp
from graphmesh.v1 import store_service_pb2 as pb
from graphmesh.v1 import store_service_pb2_grpc


def item_to_proto(item) -> pb.StoreItem:
    msg = pb.StoreItem(namespace=list(item.namespace), key=item.key, value=to_struct(item.value))
    msg.created_at.CopyFrom(timestamp(item.created_at))
    msg.updated_at.CopyFrom(timestamp(item.updated_at))
    return msg


class StoreServicer(store_service_pb2_grpc.StoreServiceServicer):
    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    async def PutItem(self, request, context):
        value = from_proto(request.value) if request.HasField("value") else None
        await self._memory.put(request.namespace, request.key, value, ttl_minutes=request.ttl_minutes)
        return pb.PutItemResponse()

    async def GetItem(self, request, context):
        item = await self._memory.get(request.namespace, request.key, refresh_ttl=not request.no_refresh_ttl)
        return pb.GetItemResponse(item=item_to_proto(item))

    async def DeleteItem(self, request, context):
        await self._memory.delete(request.namespace, request.key)
        return pb.DeleteItemResponse()

    async def SearchItems(self, request, context):
        items = await self._memory.search(
            request.namespace_prefix, filter=from_proto(request.filter) if request.HasField("filter") else None,
            limit=request.limit, offset=request.offset)
        return pb.SearchItemsResponse(items=[item_to_proto(i) for i in items])

    async def ListNamespaces(self, request, context):
        found = await self._memory.namespaces(prefix=request.prefix, suffix=request.suffix,
                                              max_depth=request.max_depth, limit=request.limit,
                                              offset=request.offset)
        return pb.ListNamespacesResponse(namespaces=[pb.ListNamespacesResponse.Namespace(path=list(p))
                                                     for p in found])
