"""Mesh phase: N runs of `tiny` through the api's RunService from C concurrent gRPC clients.

Each client owns its own grpc.aio channel and does, per run: CreateRun, then at once
StreamRun on the returned run id, reading events until the terminal status event.
Timings start just before CreateRun is sent.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.inprocess import GRAPH, bench_input, drive
from bench.stats import PhaseResult, Sample

TERMINAL_NAMES = {"RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED"}


async def mesh_phase(address: str, runs: int, concurrency: int, warmup: int,
                     on_measure=None) -> PhaseResult:
    """on_measure(True) is called when the measured runs start, on_measure(False) when they end."""
    from graphmesh.client import async_api_client
    from graphmesh.jsonvalues import to_struct
    from graphmesh.v1 import run_pb2
    from graphmesh.v1 import run_service_pb2 as pb

    terminal = {run_pb2.RunStatus.Value(n) for n in TERMINAL_NAMES}
    completed = run_pb2.RunStatus.Value("RUN_STATUS_COMPLETED")
    clients = [async_api_client(address) for _ in range(concurrency)]
    for c in clients:
        await c.channel.channel_ready()

    async def run_one(k: int, i: int) -> Sample | None:
        stub = clients[k].runs
        request = pb.CreateRunRequest(graph=GRAPH, input=to_struct(bench_input(i)))
        t0 = time.perf_counter()
        created = await stub.CreateRun(request, timeout=30)
        first = first_node = None
        status = None
        async for reply in stub.StreamRun(pb.StreamRunRequest(run_id=created.run.run_id), timeout=60):
            now = time.perf_counter()
            if first is None:
                first = now
            kind = reply.event.WhichOneof("kind")
            if first_node is None and kind in ("node_started", "node_finished"):
                first_node = now
            if kind == "status_changed" and reply.event.status_changed.status in terminal:
                status = reply.event.status_changed.status
                break
        done = time.perf_counter()
        if status != completed:
            print(f"mesh run {created.run.run_id} ended with status {status}", file=sys.stderr)
            return None
        return Sample(first - t0, done - t0, None if first_node is None else first_node - t0)

    try:
        if warmup:
            await drive(warmup, concurrency, run_one)
        if on_measure:
            on_measure(True)
        samples, failed, wall = await drive(runs, concurrency, run_one)
        if on_measure:
            on_measure(False)
    finally:
        for c in clients:
            await c.channel.close()
    return PhaseResult("mesh", "graphmesh mesh: CreateRun + StreamRun over gRPC from C clients",
                       runs, concurrency, wall, failed, samples)
