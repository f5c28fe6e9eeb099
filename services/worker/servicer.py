"""WorkerService: status and drain of this worker."""

from __future__ import annotations

import asyncio

from graphmesh.messages import timestamp
from graphmesh.v1 import worker_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2_grpc
from graphmesh.worker.consumer import JobConsumer


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, consumer: JobConsumer, registry, started_at, drain_grace: float) -> None:
        self._consumer = consumer
        self._registry = registry
        self._started_at = started_at
        self._drain_grace = drain_grace

    def status(self) -> pb.GetWorkerStatusResponse:
        c = self._consumer
        return pb.GetWorkerStatusResponse(
            worker_id=c.worker_id,
            capacity=c.capacity,
            draining=c.draining,
            runs_completed=c.runs_completed,
            started_at=timestamp(self._started_at),
            active_runs=[
                pb.ActiveRun(run_id=a.run.run_id, thread_id=a.run.thread_id, graph=a.run.graph,
                             graph_version=a.run.versions["graph_version"], started_at=timestamp(a.started_at))
                for a in c.active.values()
            ],
            graphs=[pb.LoadedGraph(graph=s.name, graph_version=s.version) for s in self._registry.specs()],
        )

    async def GetWorkerStatus(self, request, context):
        return self.status()

    async def Drain(self, request, context):
        grace = request.grace_seconds or self._drain_grace
        # Drain in the background: the caller gets the draining status at once.
        self._consumer.start_drain(grace)
        await asyncio.sleep(0)
        return pb.DrainResponse(status=self.status())
