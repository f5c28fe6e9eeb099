"""GraphService: the registered graphs and their versions, node switches, the workers."""

from __future__ import annotations

from graphmesh.bus.control import publish_nodes_changed, publish_rollout_changed
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.messages import timestamp
from graphmesh.routing import VersionRouter
from graphmesh.rpc.principal import caller, principal
from graphmesh.store import ControlStore, DisabledNode, RunStatus
from graphmesh.store.rollouts import RolloutStore
from graphmesh.v1 import graph_service_pb2 as pb
from graphmesh.v1 import graph_service_pb2_grpc, run_pb2, worker_service_pb2

# A worker that has not announced itself for this long is presumed gone.
WORKER_SEEN_SECONDS = 10.0


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

    async def _apply(self, graph: str, weights: dict[str, int], context, reason: str, action: str) -> None:
        await self._rollouts.set(graph, weights, actor=principal(context), reason=reason, action=action,
                                 previous=self._router.weights(graph))
        await self._router.refresh()
        await publish_rollout_changed(self._nc, graph)


def _disabled_to_proto(d: DisabledNode) -> pb.DisabledNode:
    return pb.DisabledNode(node=d.node, reason=d.reason, disabled_by=d.disabled_by,
                           disabled_at=timestamp(d.disabled_at))
