"""AssistantService: LangGraph's assistants (graphmesh/store/assistants.py).

Every graph the manifest declares has a system assistant (graphmesh/assistants.py), made on
this servicer's first call (and by `ensure_system_assistants` at start); a graph name works
wherever an assistant id is asked for. Only assistants of declared graphs are shown, and
only of graphs the caller covers. Anyone may read them; a submitter or operator of the
graph creates one and owns it; its owner or an operator of its graph changes or deletes it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from google.protobuf import json_format

from graphmesh.assistants import check_config, parse_assistant_id, system_assistant_id, system_assistants
from graphmesh.auth.principals import ALL_GRAPHS, Principal
from graphmesh.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from graphmesh.jsonvalues import to_struct
from graphmesh.messages import timestamp
from graphmesh.rpc.principal import caller
from graphmesh.store import RunStore
from graphmesh.store.assistants import EDITABLE, AssistantFilter, AssistantRecord, AssistantStore
from graphmesh.store.paging import page_size
from graphmesh.v1 import assistant_service_pb2 as pb
from graphmesh.v1 import assistant_service_pb2_grpc

SORT_BY = {pb.ASSISTANT_SORT_BY_UNSPECIFIED: "created_at", pb.ASSISTANT_SORT_BY_CREATED_AT: "created_at",
           pb.ASSISTANT_SORT_BY_UPDATED_AT: "updated_at", pb.ASSISTANT_SORT_BY_NAME: "name",
           pb.ASSISTANT_SORT_BY_GRAPH: "graph", pb.ASSISTANT_SORT_BY_ASSISTANT_ID: "assistant_id"}
DEFAULT_LIMIT = 10
# LangGraph's server names an assistant created without a name so.
DEFAULT_NAME = "Untitled"
# System assistants' ids are uuid5(NAMESPACE_GRAPH, graph): clients may not choose any
# version-5 id, since a graph declared later would find its id taken (its name would then
# resolve to a client's assistant of another graph).
SYSTEM_ID_VERSION = 5


def assistant_to_proto(a: AssistantRecord) -> pb.Assistant:
    return pb.Assistant(assistant_id=a.assistant_id, graph=a.graph, name=a.name, description=a.description,
                        config=to_struct(a.config), context=to_struct(a.context), metadata=to_struct(a.metadata),
                        version=a.version, created_at=timestamp(a.created_at), updated_at=timestamp(a.updated_at),
                        system=a.system)


async def ensure_system_assistants(store: RunStore, registry) -> int:
    """Inserts the system assistant of every declared graph that lacks one (idempotent; api
    replicas may run it at once). Returns how many were new."""
    return await AssistantStore(store).insert_system(system_assistants(registry.names()))


def _dict(message, field: str) -> dict[str, Any] | None:
    return json_format.MessageToDict(getattr(message, field)) if message.HasField(field) else None


def ensure_can_manage(me: Principal, assistant: AssistantRecord, action: str) -> None:
    if assistant.owner == me.name or (me.has("operator") and me.covers(assistant.graph)):
        return
    raise PermissionDenied(f"{me.name} may not {action} assistant {assistant.assistant_id}: it is not its owner and "
                           f"does not operate graph '{assistant.graph}'", code="NOT_YOUR_ASSISTANT")


class AssistantServicer(assistant_service_pb2_grpc.AssistantServiceServicer):
    def __init__(self, *, store: RunStore, registry) -> None:
        self._runs = store
        self._assistants = AssistantStore(store)
        self._registry = registry
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _ensure_ready(self) -> None:
        """The system assistants exist before the first answer (once per process)."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await ensure_system_assistants(self._runs, self._registry)
                self._ready = True

    def _graph(self, name: str) -> str:
        if not name:
            raise InvalidArgument("graph is required", code="INVALID_ASSISTANT")
        return self._registry.get(name).name  # NOT_FOUND (GRAPH_NOT_FOUND) for an unknown graph

    def _visible_graphs(self, me: Principal) -> list[str]:
        names = self._registry.names()
        return names if me.covers(ALL_GRAPHS) else [g for g in names if me.covers(g)]

    async def _found(self, assistant_or_graph: str) -> AssistantRecord:
        """By id, or by graph name (its system assistant), as the caller may see it. A graph's
        name and its system id (uuid5) resolve only to that graph's system assistant."""
        await self._ensure_ready()
        if not assistant_or_graph:
            raise InvalidArgument("assistant_id is required")
        assistant_id = parse_assistant_id(assistant_or_graph)
        names = self._registry.names()
        if assistant_id is None:
            if assistant_or_graph not in names:
                raise NotFound(f"no assistant has id '{assistant_or_graph}' and no graph is named so (graphs: "
                               f"{', '.join(names)})", code="ASSISTANT_NOT_FOUND")
            found = await self._assistants.find_system(assistant_or_graph)
        else:
            found = await self._assistants.find(assistant_id)
            system_of = {system_assistant_id(g): g for g in names}.get(assistant_id)
            if found is not None and system_of is not None and not (found.system and found.graph == system_of):
                found = None  # a client's assistant on a graph's system id (insert_system logs it)
        me = caller()
        # Assistants of graphs this deployment no longer declares (or the caller does not
        # cover) are not shown, as if they were not there.
        if found is None or found.graph not in self._visible_graphs(me):
            raise NotFound(f"assistant '{assistant_or_graph}' not found", code="ASSISTANT_NOT_FOUND")
        return found

    async def GetAssistant(self, request, context):
        return pb.GetAssistantResponse(assistant=assistant_to_proto(await self._found(request.assistant_id)))

    async def CreateAssistant(self, request, context):
        await self._ensure_ready()
        me = caller()
        graph = self._graph(request.graph)
        me.require("submitter", "operator", graph=graph, action=f"create assistants of graph '{graph}'")
        if request.if_exists not in (pb.ASSISTANT_IF_EXISTS_UNSPECIFIED, pb.ASSISTANT_IF_EXISTS_RAISE,
                                     pb.ASSISTANT_IF_EXISTS_DO_NOTHING):
            raise InvalidArgument(f"unknown if_exists {request.if_exists}")
        assistant_id = str(uuid.uuid4())
        if request.assistant_id:
            assistant_id = parse_assistant_id(request.assistant_id)
            if assistant_id is None:
                raise InvalidArgument(f"assistant_id '{request.assistant_id}' is not a UUID",
                                      code="INVALID_ASSISTANT_ID")
            if uuid.UUID(assistant_id).version == SYSTEM_ID_VERSION:
                if request.if_exists == pb.ASSISTANT_IF_EXISTS_DO_NOTHING:
                    try:  # e.g. a graph's system assistant, which exists already
                        return pb.CreateAssistantResponse(assistant=assistant_to_proto(
                            await self._found(assistant_id)), created=False)
                    except NotFound:
                        pass
                raise InvalidArgument(
                    f"assistant_id '{assistant_id}' is a version-5 UUID: those are reserved for graphs' system "
                    "assistants (uuid5 of the graph's name, also for graphs declared later); leave assistant_id "
                    "out or use a random (version-4) UUID", code="RESERVED_ASSISTANT_ID")
        created = await self._assistants.create({
            "assistant_id": assistant_id, "graph": graph, "name": request.name or DEFAULT_NAME,
            "description": request.description, "config": check_config(_dict(request, "config") or {}),
            "context": _dict(request, "context") or {}, "metadata": _dict(request, "metadata") or {},
            "owner": me.name})
        if created is not None:
            return pb.CreateAssistantResponse(assistant=assistant_to_proto(created), created=True)
        if request.if_exists == pb.ASSISTANT_IF_EXISTS_DO_NOTHING:
            try:
                return pb.CreateAssistantResponse(assistant=assistant_to_proto(await self._found(assistant_id)),
                                                  created=False)
            except NotFound:
                pass  # taken by an assistant the caller may not see: it exists all the same
        raise AlreadyExists(f"assistant '{assistant_id}' already exists", code="ASSISTANT_EXISTS")

    async def UpdateAssistant(self, request, context):
        me = caller()
        current = await self._found(request.assistant_id)
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(f"update_mask must name what changes ({', '.join(EDITABLE)})",
                                  code="INVALID_UPDATE_MASK")
        unknown = sorted(set(paths) - set(EDITABLE))
        if unknown:
            raise InvalidArgument(f"update_mask names fields that cannot change: {', '.join(unknown)} "
                                  f"(editable: {', '.join(EDITABLE)})", code="INVALID_UPDATE_MASK")
        given = request.assistant
        changes: dict[str, Any] = {}
        for path in dict.fromkeys(paths):
            if path == "graph":
                changes["graph"] = self._graph(given.graph)
                me.require("submitter", "operator", graph=changes["graph"],
                           action=f"move assistants to graph '{changes['graph']}'")
            elif path in ("name", "description"):
                changes[path] = getattr(given, path) or (DEFAULT_NAME if path == "name" else "")
            else:
                value = _dict(given, path) or {}
                changes[path] = check_config(value) if path == "config" else value
        updated = await self._assistants.update(
            current.assistant_id, changes, check=lambda a: ensure_can_manage(me, a, "change"))
        return pb.UpdateAssistantResponse(assistant=assistant_to_proto(updated))

    async def DeleteAssistant(self, request, context):
        me = caller()
        current = await self._found(request.assistant_id)
        await self._assistants.delete(current.assistant_id, check=lambda a: ensure_can_manage(me, a, "delete"))
        return pb.DeleteAssistantResponse()

    def _filter(self, request) -> AssistantFilter:
        graph = self._graph(request.graph) if request.graph else ""
        return AssistantFilter(graphs=self._visible_graphs(caller()), graph=graph,
                               metadata=_dict(request, "metadata"), name=request.name)

    async def ListAssistants(self, request, context):
        await self._ensure_ready()
        limit = page_size(request.limit, DEFAULT_LIMIT, field="limit")
        sort_by = SORT_BY.get(request.sort_by)
        if sort_by is None:
            raise InvalidArgument(f"unknown sort_by {request.sort_by}")
        found = await self._assistants.list(self._filter(request), sort_by=sort_by, ascending=request.ascending,
                                            limit=limit + 1, offset=request.offset)
        return pb.ListAssistantsResponse(assistants=[assistant_to_proto(a) for a in found[:limit]],
                                         has_more=len(found) > limit)

    async def CountAssistants(self, request, context):
        await self._ensure_ready()
        return pb.CountAssistantsResponse(count=await self._assistants.count(self._filter(request)))
