"""Mesh phase: N runs of `tiny` through the api's RunService from C concurrent gRPC clients.

Each client owns its own grpc.aio channel and does, per run: CreateRun, then at once
StreamRun on the returned run id, reading events until the terminal status event.
Timings start just before CreateRun is sent.
"""

from __future__ import annotations

import sys
import time

from bench.inprocess import GRAPH, bench_input, warm_then_measure
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
        wall0 = time.time()
        t0 = time.perf_counter()
        created = await stub.CreateRun(request, timeout=30)
        marks = {"created": time.time()}  # wall-clock marks, comparable with events' publish times
        first = first_node = None
        status = None
        async for reply in stub.StreamRun(pb.StreamRunRequest(run_id=created.run.run_id), timeout=60):
            now = time.perf_counter()
            if first is None:
                first = now
            event = reply.event
            kind = event.WhichOneof("kind")
            stamp = event.time.ToNanoseconds() / 1e9
            if kind in ("node_started", "node_finished"):
                if first_node is None:
                    first_node = now
                    marks["first_node"] = stamp
                marks["last_node"] = stamp
            elif kind == "status_changed":
                name = run_pb2.RunStatus.Name(event.status_changed.status)
                marks.setdefault(name, stamp)
                if event.status_changed.status in terminal:
                    status = event.status_changed.status
                    break
        done = time.perf_counter()
        marks["received"] = time.time()
        if status != completed:
            print(f"mesh run {created.run.run_id} ended with status {status}", file=sys.stderr)
            return None
        if measuring:
            stages.append(_stages(wall0, marks))
        return Sample(first - t0, done - t0, None if first_node is None else first_node - t0)

    stages: list[dict] = []
    measuring = False

    def bracket(begin: bool) -> None:
        nonlocal measuring
        measuring = begin
        if on_measure:
            on_measure(begin)

    try:
        samples, failed, wall = await warm_then_measure(runs, concurrency, warmup, run_one, bracket)
    finally:
        for c in clients:
            await c.channel.close()
    return PhaseResult("mesh", "graphmesh mesh: CreateRun + StreamRun over gRPC from C clients",
                       runs, concurrency, wall, failed, samples, extra={"stages_ms": summarize_stages(stages)})


# Where a mesh run's time goes, from the client's clock and the events' publish times
# (same machine, same clock). Each stage ends where the next begins.
STAGES = [
    ("create_rpc", "send CreateRun -> response received (api: insert run, publish QUEUED + job)", None, "created"),
    ("queue_wait", "QUEUED published -> RUNNING published (job delivery, claim)", "RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING"),
    ("to_first_node", "RUNNING -> first node event (saver, graph start)", "RUN_STATUS_RUNNING", "first_node"),
    ("graph", "first -> last node event (3 nodes + checkpoints)", "first_node", "last_node"),
    ("finish", "last node event -> COMPLETED published (final state, run record)", "last_node", "RUN_STATUS_COMPLETED"),
    ("deliver", "COMPLETED published -> received by client (JetStream -> api -> gRPC)", "RUN_STATUS_COMPLETED", "received"),
]


def _stages(wall0: float, marks: dict) -> dict:
    out = {}
    for name, _desc, start, end in STAGES:
        a = wall0 if start is None else marks.get(start)
        b = marks.get(end)
        if a is not None and b is not None:
            out[name] = (b - a) * 1000
    return out


def summarize_stages(rows: list[dict]) -> dict:
    from bench.stats import percentile

    out = {}
    for name, desc, _a, _b in STAGES:
        values = [r[name] for r in rows if name in r]
        if values:
            out[name] = {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
                         "mean": round(sum(values) / len(values), 2), "what": desc}
    return out
