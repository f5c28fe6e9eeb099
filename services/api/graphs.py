"""GraphService: the registered graphs and their versions."""

from __future__ import annotations

from graphmesh.rpc.errors import abort_unimplemented
from graphmesh.v1 import graph_service_pb2 as pb
from graphmesh.v1 import graph_service_pb2_grpc, run_pb2


class GraphServicer(graph_service_pb2_grpc.GraphServiceServicer):
    def __init__(self, registry) -> None:
        self._registry = registry

    def _graph(self, name: str) -> pb.Graph:
        versions = self._registry.versions(name)
        if not versions:
            self._registry.get(name)  # raises NotFound with the known names
        return pb.Graph(
            name=name,
            description=versions[0].description,
            versions=[
                pb.GraphVersion(
                    versions=run_pb2.Versions(**spec.versions()),
                    weight=spec.weight,
                    sync_eligible=spec.sync_eligible,
                    nodes=self._registry.node_names(spec.name, spec.version),
                )
                for spec in versions
            ],
        )

    async def ListGraphs(self, request, context):
        return pb.ListGraphsResponse(graphs=[self._graph(n) for n in self._registry.names()])

    async def GetGraph(self, request, context):
        return pb.GetGraphResponse(graph=self._graph(request.graph))

    async def SetRollout(self, request, context):
        await abort_unimplemented(context, "SetRollout")

    async def RollbackGraph(self, request, context):
        await abort_unimplemented(context, "RollbackGraph")

    async def DisableNode(self, request, context):
        await abort_unimplemented(context, "DisableNode")

    async def EnableNode(self, request, context):
        await abort_unimplemented(context, "EnableNode")
