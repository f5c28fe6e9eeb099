"""GraphService: the registered graphs and their versions, node switches, the workers, and
a version's shape and schemas (DescribeGraph, what LangGraph's /assistants/{id}/graph,
/schemas and /subgraphs show)."""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

from langchain_core.runnables.utils import create_model
from pydantic import TypeAdapter

from graphmesh.bus.control import publish_nodes_changed, publish_rollout_changed
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.jsonvalues import jsonable, to_struct, to_value
from graphmesh.messages import timestamp
from graphmesh.routing import VersionRouter
from graphmesh.rpc.principal import caller, principal
from graphmesh.store import ControlStore, DisabledNode, RunStatus
from graphmesh.store.rollouts import RolloutStore
from graphmesh.v1 import graph_service_pb2 as pb
from graphmesh.v1 import graph_service_pb2_grpc, run_pb2, worker_service_pb2

log = logging.getLogger(__name__)

# A worker that has not announced itself for this long is presumed gone.
WORKER_SEEN_SECONDS = 10.0
# Configurable keys LangGraph fills itself: not part of a graph's config schema.
INTERNAL_CONFIG_KEYS = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns", "thread_id")


class GraphServicer(graph_service_pb2_grpc.GraphServiceServicer):
    def __init__(self, registry, control: ControlStore, rollouts: RolloutStore, router: VersionRouter, nc) -> None:
        self._registry = registry
        self._control = control
        self._rollouts = rollouts
        self._router = router
        self._nc = nc

    async def _graph(self, name: str) -> pb.Graph:
        versions = self._registry.versions(name)
        if not versions:
            self._registry.get(name)  # raises NotFound with the known names
        disabled = await self._control.disabled_nodes(name)
        workers = await self._control.workers(seen_within_seconds=WORKER_SEEN_SECONDS)
        weights = self._router.weights(name)
        in_flight = await self._rollouts.in_flight(name)
        graph = versions[0].name

        def serving(version: str) -> list[str]:
            return [w.worker_id for w in workers if {"graph": graph, "graph_version": version} in w.graphs]

        def counts(version: str) -> dict[str, int]:
            found = in_flight.get(version, {})
            return dict(runs_queued=found.get(RunStatus.QUEUED, 0), runs_running=found.get(RunStatus.RUNNING, 0),
                        runs_waiting=found.get(RunStatus.WAITING_FOR_APPROVAL, 0),
                        runs_paused=found.get(RunStatus.PAUSED, 0))

        declared = [
            pb.GraphVersion(
                versions=run_pb2.Versions(**spec.versions()),
                weight=weights.get(spec.version, 0),
                sync_eligible=spec.sync_eligible,
                nodes=self._registry.node_names(spec.name, spec.version),
                workers=serving(spec.version),
                **counts(spec.version),
            )
            for spec in versions
        ]
        # Versions the manifest no longer declares but runs in flight are still recorded on
        # (they wait for a worker that loads them, or one that can migrate them).
        known = {spec.version for spec in versions}
        undeclared = [
            pb.GraphVersion(versions=run_pb2.Versions(graph_version=version), workers=serving(version),
                            undeclared=True, **counts(version))
            for version in sorted(set(in_flight) - known)
        ]
        return pb.Graph(
            name=name,
            description=versions[0].description,
            versions=declared + undeclared,
            disabled_nodes=[_disabled_to_proto(d) for d in disabled],
        )

    async def ListGraphs(self, request, context):
        return pb.ListGraphsResponse(graphs=[await self._graph(n) for n in self._registry.names()])

    async def GetGraph(self, request, context):
        return pb.GetGraphResponse(graph=await self._graph(request.graph))

    def _node_of(self, graph: str, node: str) -> None:
        if not node:
            raise InvalidArgument("node is required")
        spec = self._registry.get(graph)
        known = {n for s in self._registry.versions(spec.name) for n in self._registry.node_names(s.name, s.version)}
        if node not in known:
            raise NotFound(f"graph '{graph}' has no node '{node}' (nodes: {', '.join(sorted(known))})",
                           code="NODE_NOT_FOUND")

    async def DisableNode(self, request, context):
        caller().require("operator", graph=request.graph, action=f"disable nodes of '{request.graph}'")
        self._node_of(request.graph, request.node)
        if not request.reason:
            raise InvalidArgument("a reason is required: it is what paused runs and operators will read")
        await self._control.disable_node(request.graph, request.node, reason=request.reason, actor=principal(context))
        await publish_nodes_changed(self._nc, request.graph)
        return pb.DisableNodeResponse(graph=await self._graph(request.graph))

    async def EnableNode(self, request, context):
        caller().require("operator", graph=request.graph, action=f"enable nodes of '{request.graph}'")
        self._node_of(request.graph, request.node)
        if not await self._control.enable_node(request.graph, request.node):
            raise FailedPrecondition(f"node '{request.node}' of graph '{request.graph}' is not disabled",
                                     code="NODE_NOT_DISABLED")
        await publish_nodes_changed(self._nc, request.graph)
        return pb.EnableNodeResponse(graph=await self._graph(request.graph))

    async def ListWorkers(self, request, context):
        workers = await self._control.workers(seen_within_seconds=WORKER_SEEN_SECONDS)
        return pb.ListWorkersResponse(workers=[
            pb.WorkerInfo(worker_id=w.worker_id, address=w.address, capacity=w.capacity, active_runs=w.active,
                          draining=w.draining, started_at=timestamp(w.started_at), last_seen=timestamp(w.last_seen),
                          graphs=[worker_service_pb2.LoadedGraph(**g) for g in w.graphs])
            for w in workers])

    async def SetRollout(self, request, context):
        graph = self._registry.get(request.graph).name
        caller().require("operator", graph=graph, action=f"set the rollout of '{graph}'")
        known = [s.version for s in self._registry.versions(graph)]
        unknown = sorted(set(request.weights) - set(known))
        if unknown:
            raise InvalidArgument(f"graph '{graph}' has no version(s) {', '.join(unknown)} (versions: "
                                  f"{', '.join(known)})", code="UNKNOWN_VERSION")
        if sum(request.weights.values()) != 100:
            raise InvalidArgument(f"weights must sum to 100, not {sum(request.weights.values())}",
                                  code="WEIGHTS_NOT_100")
        if not request.reason:
            raise InvalidArgument("a reason is required: it is recorded with the rollout")
        weights = {v: request.weights.get(v, 0) for v in known}
        await self._apply(graph, weights, context, request.reason, "set_rollout")
        return pb.SetRolloutResponse(graph=await self._graph(graph))

    async def RollbackGraph(self, request, context):
        """Sends all new runs to the previous version at once; runs in flight keep theirs."""
        graph = self._registry.get(request.graph).name
        caller().require("operator", graph=graph, action=f"roll back '{graph}'")
        if not request.reason:
            raise InvalidArgument("a reason is required: it is recorded with the rollback")
        current = self._router.weights(graph)
        versions = list(current)
        # The newest version taking new runs (the one being rolled out) gives way to the one before it.
        newest = max((v for v in versions if current[v] > 0), key=versions.index)
        if versions.index(newest) == 0:
            raise FailedPrecondition(f"graph '{graph}' sends new runs only to its first version '{newest}'; "
                                     "there is no earlier version to roll back to", code="NO_EARLIER_VERSION")
        previous = versions[versions.index(newest) - 1]
        await self._apply(graph, {v: 100 if v == previous else 0 for v in versions}, context, request.reason,
                          "rollback")
        return pb.RollbackGraphResponse(graph=await self._graph(graph))

    async def DescribeGraph(self, request, context):
        name = self._registry.get(request.graph).name  # NOT_FOUND for an unknown graph
        version = request.graph_version
        if version:
            version = self._registry.get(name, version).version
        else:  # the version new runs go to: the heaviest weight (ties: the latest)
            weights = self._router.weights(name)
            version = max(reversed(list(weights)), key=weights.get)
        if request.xray < -1:
            raise InvalidArgument("xray is a depth: 0 (none), -1 (all levels) or a positive number of levels")
        graph = self._registry.compiled(name, version)
        xray: bool | int = True if request.xray == -1 else request.xray
        drawable, schemas, subgraphs = await asyncio.to_thread(
            _describe, graph, xray, request.subgraph_namespace or None, request.recurse)
        return pb.DescribeGraphResponse(graph=name, graph_version=version, drawable=to_struct(drawable),
                                        schemas=schemas, subgraphs=subgraphs)

    async def _apply(self, graph: str, weights: dict[str, int], context, reason: str, action: str) -> None:
        await self._rollouts.set(graph, weights, actor=principal(context), reason=reason, action=action,
                                 previous=self._router.weights(graph))
        await self._router.refresh()
        await publish_rollout_changed(self._nc, graph)


def _disabled_to_proto(d: DisabledNode) -> pb.DisabledNode:
    return pb.DisabledNode(node=d.node, reason=d.reason, disabled_by=d.disabled_by,
                           disabled_at=timestamp(d.disabled_at))


# -- DescribeGraph: the shapes LangGraph's assistant endpoints return ------------------------

def _describe(graph, xray: bool | int, namespace: str | None, recurse: bool):
    """(drawable graph JSON, schemas, namespace -> subgraph schemas) of a compiled graph."""
    try:
        drawable = jsonable(graph.get_graph(xray=xray).to_json())
    except NotImplementedError:
        raise FailedPrecondition("this graph cannot be drawn", code="GRAPH_NOT_DRAWABLE") from None
    for node in drawable.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)  # the node's Python class path, as LangGraph's server drops it
    subgraphs = {ns: _schemas(sub) for ns, sub in graph.get_subgraphs(namespace=namespace, recurse=recurse)}
    return drawable, _schemas(graph), subgraphs


def _schemas(graph) -> pb.GraphSchemas:
    return pb.GraphSchemas(**{field: to_value(_schema(graph, field, make)) for field, make in (
        ("input_schema", lambda g: g.get_input_jsonschema()),
        ("output_schema", lambda g: g.get_output_jsonschema()),
        ("state_schema", _state_schema),
        ("config_schema", _config_schema),
        ("context_schema", lambda g: g.get_context_jsonschema()))})


def _schema(graph, field: str, make) -> Any:
    """One schema, or None where the graph cannot give it (logged, as LangGraph's server does)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # config_schema() is deprecated, and still what it takes
            return jsonable(make(graph))
    except Exception as exc:
        log.warning("graph %s: no %s: %s: %s", getattr(graph, "name", "?"), field, type(exc).__name__, exc)
        return None


def _state_schema(graph) -> dict:
    """The state's channels (those a client sees) with the type each takes updates of."""
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        kind = graph.channels[key].UpdateType
        try:
            create_model(key, __root__=(kind, None)).model_json_schema()
            fields[key] = (kind, None)
        except Exception:
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _config_schema(graph) -> dict:
    """The `configurable` part of the graph's config schema, without LangGraph's own keys."""
    config = graph.config_schema()
    fields = getattr(config, "model_fields", None) or {}
    if "configurable" not in fields:
        return {}
    schema = TypeAdapter(fields["configurable"].annotation).json_schema()
    for key in INTERNAL_CONFIG_KEYS:
        schema.get("properties", {}).pop(key, None)
    if getattr(graph, "config_type", None) is not None and hasattr(graph.config_type, "__name__"):
        schema["title"] = graph.config_type.__name__
    return schema
