"""In-process baselines: the `tiny` graph under AsyncPostgresSaver, in this one process.

Run by run_bench.py in a fresh child process (so the in-process figures are not skewed by
the benchmark driver's gRPC threads), printing one JSON list of phase results on stdout:

    python bench/inprocess.py --database-url URL --mode naive|fastest --runs N --concurrency C

Every variant does the same durable work as a mesh worker's graph execution: one new
thread per run, a checkpoint per step (LangGraph's default durability, "async"), on the
same Postgres. What differs is how savers and connections are shared:

  naive                 one AsyncPostgresSaver shared by all concurrent runs (it serialises
                        every call behind one asyncio.Lock)
  saver-per-run         a new AsyncPostgresSaver per run over one shared connection pool
  saver-per-connection  each of the C client tasks holds one pooled connection for the whole
                        phase and one saver bound to it (no pool checkout per checkpoint call)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Awaitable, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.stats import PhaseResult, Sample  # noqa: E402

GRAPH, GRAPH_VERSION = "tiny", "1"


def bench_input(i: int) -> dict:
    return {"text": f"  The quick brown Fox {i} jumps over   the lazy dog, again and AGAIN  "}


async def warm_then_measure(runs: int, concurrency: int, warmup: int, run_one, on_measure=None
                            ) -> tuple[list[Sample], int, float]:
    """`warmup` unmeasured runs, then `runs` measured ones (drive's result);
    on_measure(True) / on_measure(False) bracket the measured ones."""
    if warmup:
        await drive(warmup, concurrency, run_one)
    if on_measure:
        on_measure(True)
    result = await drive(runs, concurrency, run_one)
    if on_measure:
        on_measure(False)
    return result


async def drive(n: int, concurrency: int, run_one: Callable[[int, int], Awaitable[Sample | None]]
                ) -> tuple[list[Sample], int, float]:
    """n runs from `concurrency` tasks; run_one(task_index, run_index) -> Sample or None (failed)."""
    counter = iter(range(n))
    samples: list[Sample] = []
    failed = 0

    async def client(k: int) -> None:
        nonlocal failed
        for i in counter:
            try:
                s = await run_one(k, i)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                print(f"run {i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                s = None
            if s is None:
                failed += 1
            else:
                samples.append(s)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return samples, failed, time.perf_counter() - t0


DURABILITY = "async"  # LangGraph's default; --durability matches a mesh graph's `durability`


async def timed_stream(graph, i: int) -> Sample:
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    t0 = time.perf_counter()
    first = None
    async for _chunk in graph.astream(bench_input(i), config, stream_mode="updates", durability=DURABILITY):
        if first is None:
            first = time.perf_counter()
    done = time.perf_counter()
    return Sample((first or done) - t0, done - t0)


async def run_variant(variant: str, url: str, runs: int, concurrency: int, warmup: int,
                      postgres_pid: int | None = None) -> PhaseResult:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from graphmesh.db import make_pool
    from graphmesh.registry import Registry

    base = Registry.default().compiled(GRAPH, GRAPH_VERSION)
    pool = make_pool(url, max_size=concurrency + 2, name=f"bench-{variant}")
    await pool.open(wait=True)
    held: list = []
    try:
        if variant == "naive":
            shared = base.copy(update={"checkpointer": AsyncPostgresSaver(pool)})

            async def run_one(k: int, i: int) -> Sample:
                return await timed_stream(shared, i)

            desc = "in-process, one shared AsyncPostgresSaver, C concurrent asyncio runs"
        elif variant == "saver-per-run":
            async def run_one(k: int, i: int) -> Sample:
                return await timed_stream(base.copy(update={"checkpointer": AsyncPostgresSaver(pool)}), i)

            desc = "in-process, a new AsyncPostgresSaver per run over a shared pool"
        elif variant == "saver-per-connection":
            graphs = []
            for _ in range(concurrency):
                conn = await pool.getconn()
                held.append(conn)
                graphs.append(base.copy(update={"checkpointer": AsyncPostgresSaver(conn)}))

            async def run_one(k: int, i: int) -> Sample:
                return await timed_stream(graphs[k], i)

            desc = "in-process, each client task owns one connection + saver"
        else:
            raise SystemExit(f"unknown variant {variant}")

        meter = CpuMeter({"in-process": os.getpid(), "postgres": postgres_pid})
        cpu: dict = {}
        samples, failed, wall = await warm_then_measure(
            runs, concurrency, warmup, run_one, lambda begin: meter.start() if begin else cpu.update(meter.stop()))
        return PhaseResult(variant, desc, runs, concurrency, wall, failed, samples, extra={"cpu_s": cpu})
    finally:
        for conn in held:
            await pool.putconn(conn)
        await pool.close()


VARIANTS = {"naive": ["naive"], "fastest": ["saver-per-run", "saver-per-connection"]}


async def main_async(args) -> list[dict]:
    out = []
    for variant in VARIANTS.get(args.mode, [args.mode]):
        out.append((await run_variant(variant, args.database_url, args.runs, args.concurrency, args.warmup,
                                       args.postgres_pid)).to_json())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--mode", default="naive", help="naive | fastest | one variant name")
    p.add_argument("--durability", default="async", choices=["async", "sync", "exit"],
                   help="LangGraph durability of the runs (default async, LangGraph's own default)")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--postgres-pid", type=int, help="postmaster pid, to count Postgres CPU")
    args = p.parse_args()
    global DURABILITY
    DURABILITY = args.durability
    os.chdir(REPO_ROOT)  # Registry.default() looks for graphmesh.yaml here
    result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
