"""Backlog drain: N queued runs, then workers drain them; RSS sampled all along.

Issue 16 asks that 100,000 queued runs drain with flat memory in the api and the workers,
and no stuck run. One invocation:

1. starts an embedded mesh (auth and tracing on, as deployed) and stops its workers;
2. **enqueue**: C clients send N `CreateRun(graph="tiny")` (each a new thread), no stream;
3. **drain**: starts the workers and polls Postgres until no run is QUEUED or RUNNING,
   sampling every process's RSS (psutil, the process tree for Postgres) each second;
4. reports enqueue and drain rates, each process's RSS at the start of the measured drain,
   its peak during the drain and at the end, the growth (peak over start), runs that
   ended other than COMPLETED, runs still not done if the drain stalls (`--stall-seconds`
   without progress), and how many job messages the reconciler re-published during the
   drain (each one a duplicate a worker must discard).

The "start" RSS is sampled once `--warm` runs have completed (default 2% of N, at least
200): a fresh worker grows while it loads the graph, opens its pool and fills LangGraph's
caches, and that is not a leak. Growth is measured from there to the peak.

    .venv/bin/python bench/backlog.py                      # 100,000 runs (about 35 min at 50 runs/s on 2 cores)
    .venv/bin/python bench/backlog.py --runs 10000 --json backlog.json
    .venv/bin/python bench/backlog.py --runs 20000 --workers 4 --durability exit

No thresholds: it reports, and says whether issue 16's target (RSS growth <= 10 %) was met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

TARGET_GROWTH = 0.10
NOT_DONE = "SELECT count(*) FROM gm_runs WHERE status IN ('QUEUED', 'RUNNING')"
BY_STATUS = "SELECT status, count(*) FROM gm_runs GROUP BY status"


def rss_of(pid: int) -> int:
    """Resident bytes of a process and its children (Postgres forks a backend per connection)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class RssSampler(threading.Thread):
    """Samples {name: rss} each `every` seconds, tagged with the runs done so far."""

    def __init__(self, pids: dict[str, int], every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.done = 0  # set by the drain loop
        self.samples: list[tuple[float, int, dict[str, int]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), self.done, {n: rss_of(p) for n, p in self.pids.items()}))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


async def enqueue(address: str, runs: int, concurrency: int) -> tuple[float, int]:
    """Creates `runs` runs from `concurrency` clients; (seconds, refused)."""
    from bench.inprocess import GRAPH, bench_input
    from graphmesh.client import async_api_client
    from graphmesh.jsonvalues import to_struct
    from graphmesh.v1 import run_service_pb2 as pb

    clients = [async_api_client(address) for _ in range(concurrency)]
    todo = iter(range(runs))
    refused = 0

    async def client(c) -> None:
        nonlocal refused
        for i in todo:
            try:
                await c.runs.CreateRun(pb.CreateRunRequest(graph=GRAPH, input=to_struct(bench_input(i))), timeout=30)
            except Exception as exc:  # counted and shown: a refused create is a finding, not noise
                refused += 1
                if refused <= 3:
                    print(f"CreateRun refused: {exc}", file=sys.stderr)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(c) for c in clients))
    finally:
        for c in clients:
            await c.channel.close()
    return time.perf_counter() - started, refused


def drain(conn, sampler: RssSampler, total: int, stall_seconds: float, say) -> tuple[float, int]:
    """Polls until nothing is queued or running, or no progress for stall_seconds; (seconds, not done)."""
    started = last_progress = time.perf_counter()
    left = previous = total
    while left:
        time.sleep(1.0)
        left = conn.execute(NOT_DONE).fetchone()[0]
        sampler.done = total - left
        now = time.perf_counter()
        if left < previous:
            previous, last_progress = left, now
            if int(now - started) % 30 == 0:
                say(f"  {total - left}/{total} done, {(total - left) / (now - started):.1f} runs/s")
        elif now - last_progress > stall_seconds:
            say(f"  no progress for {stall_seconds:g} s: {left} runs not done")
            break
    return time.perf_counter() - started, left


def rss_report(samples, warm: int) -> dict[str, dict]:
    """Per process: RSS (MiB) once `warm` runs were done, the peak after that, at the end, growth."""
    after = [s for s in samples if s[1] >= warm] or samples[-1:]
    report = {}
    for name in after[0][2]:
        start = after[0][2][name]
        peak = max(s[2][name] for s in after)
        report[name] = {"start_mib": round(start / 2**20, 1), "peak_mib": round(peak / 2**20, 1),
                        "end_mib": round(after[-1][2][name] / 2**20, 1),
                        "growth": round((peak - start) / start, 4) if start else None}
    return report


def render(r: dict) -> str:
    lines = [f"machine: {r['cores']} cores; {r['runs']} runs of tiny, {r['workers']} workers x "
             f"{r['worker_concurrency']}, durability {r['durability']}",
             f"enqueue: {r['enqueue_s']:.1f} s, {r['enqueue_runs_per_s']:.1f} runs/s, refused {r['refused']}",
             f"drain:   {r['drain_s']:.1f} s, {r['drain_runs_per_s']:.1f} runs/s; not done at the end: "
             f"{r['not_done']}; statuses {r['statuses']}",
             f"reconciler re-published {r['republished']} job messages during the drain",
             f"RSS (MiB; start = once {r['warm']} runs were done):",
             f"  {'process':10} {'start':>8} {'peak':>8} {'end':>8} {'growth':>8}"]
    for name, m in r["rss"].items():
        growth = "-" if m["growth"] is None else f"{m['growth'] * 100:+.1f}%"
        lines.append(f"  {name:10} {m['start_mib']:>8} {m['peak_mib']:>8} {m['end_mib']:>8} {growth:>8}")
    graphmesh = [m["growth"] for n, m in r["rss"].items() if n.startswith(("api", "worker")) and m["growth"] is not None]
    met = bool(graphmesh) and max(graphmesh) <= TARGET_GROWTH and r["not_done"] == 0
    lines.append(f"target (issue 16): api and worker RSS growth <= {TARGET_GROWTH:.0%} and no stuck run: "
                 f"{'MET' if met else 'NOT MET'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100_000, help="runs in the backlog (default 100000)")
    p.add_argument("--concurrency", type=int, default=16, help="clients creating runs (default 16)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-concurrency", type=int, default=8)
    p.add_argument("--durability", default="async", choices=["async", "sync", "exit"])
    p.add_argument("--warm", type=int, help="runs done before the start RSS is taken (default 2%% of N, >= 200)")
    p.add_argument("--stall-seconds", type=float, default=120.0, help="give up after this long without progress")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the data directory and its logs")
    args = p.parse_args(argv)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    warm = args.warm if args.warm is not None else max(200, args.runs // 50)

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()  # before grpc is imported: the mesh forks while this process holds gRPC
    import psycopg

    from bench.scale import bench_manifest
    from graphmesh.mesh import Mesh, MeshConfig

    os.chdir(REPO_ROOT)
    data_dir = Path(tempfile.mkdtemp(prefix="graphmesh-backlog-"))
    mesh = Mesh(MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0, workers=args.workers,
                           worker_concurrency=args.worker_concurrency,
                           manifest=bench_manifest(data_dir, args.durability), review_web_port=None),
                report=lambda s: None)
    workers = [n for n in mesh.service_names if n.startswith("worker")]
    try:
        mesh.start()
        os.environ["GRAPHMESH_TOKEN"] = mesh.create_token("bench", ["admin"], created_by="bench")[1]
        for name in workers:
            mesh.stop_service(name)
        say(f"enqueueing {args.runs} runs ...")
        enqueue_s, refused = asyncio.run(enqueue(mesh.api_address, args.runs, args.concurrency))
        with psycopg.connect(mesh.database_url, autocommit=True) as conn:
            total = conn.execute(NOT_DONE).fetchone()[0]
            api_log_before = mesh.log_path("api").read_text(errors="replace").count("re-publishing run")
            say(f"draining {total} runs ...")
            for name in workers:
                mesh.start_service(name)
            pids = {n: mesh.pid(n) for n in ["api", *workers]} | {"nats": mesh.nats.pid,
                                                                   "postgres": mesh.postgres.pid}
            sampler = RssSampler({n: pid for n, pid in pids.items() if pid})
            sampler.start()
            try:
                drain_s, not_done = drain(conn, sampler, total, args.stall_seconds, say)
            finally:
                sampler.stop()
            statuses = dict(conn.execute(BY_STATUS).fetchall())
        republished = mesh.log_path("api").read_text(errors="replace").count("re-publishing run") - api_log_before
        report = {"cores": os.cpu_count(), "runs": args.runs, "workers": args.workers,
                  "worker_concurrency": args.worker_concurrency, "durability": args.durability, "warm": warm,
                  "enqueue_s": round(enqueue_s, 1), "enqueue_runs_per_s": round(args.runs / enqueue_s, 1),
                  "refused": refused, "drain_s": round(drain_s, 1),
                  "drain_runs_per_s": round((total - not_done) / drain_s, 1), "not_done": not_done,
                  "statuses": statuses, "republished": republished, "rss": rss_report(sampler.samples, warm),
                  "rss_samples": [{"t": t, "done": d, **m} for t, d, m in sampler.samples]}
    finally:
        mesh.stop()
        if args.keep:
            say(f"kept {data_dir}")
        else:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not_done == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
