"""LangGraph HTTP API side by side: `runs.wait` through graphmesh's gateway and through `langgraph dev`.

One invocation runs the same graph with the same load against these systems, one at a time:

  in-process     graph.ainvoke(input) in a child process (the graph compiled with no
                 checkpointer): the cost of the graph alone, the floor for both servers
  langgraph dev  langgraph-cli[inmem] from a virtualenv of its own (its pins differ from
                 graphmesh's), serving bench/gateway-graph/langgraph.json
  graphmesh      a mesh started with graphmesh.mesh (Postgres fsync on, NATS, api, review,
                 workers, the gateway; auth on) on the same langgraph.json
  graphmesh gRPC the same mesh through its own API (CreateRun, then StreamRun to the terminal
                 event; bench/mesh_load.py), which shows what the HTTP gateway adds (tiny only)

Per system: --warmup unmeasured runs, then --runs measured runs from --concurrency clients. Each
client task has a LangGraph Python SDK client of its own (langgraph_sdk.get_client, httpx) and
calls `client.runs.wait(None, graph, input=...)` (POST /runs/wait, a stateless run), or with
--on-thread `threads.create()` then `runs.wait(thread_id, ...)`, both timed as one run. Figures:
runs/s (measured runs / their wall time), p50/p99 latency, CPU ms per run (psutil: each
system's processes and this driver), and the ratios between the systems.

    .venv/bin/python bench/gateway.py                           # 200 runs at 16 clients, tiny
    .venv/bin/python bench/gateway.py --concurrency 1,16 --runs 100 --json gateway.json
    .venv/bin/python bench/gateway.py --venv /tmp/lgdev         # an existing langgraph dev venv
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.inprocess import bench_input, warm_then_measure  # noqa: E402
from bench.stats import PhaseResult, Sample  # noqa: E402

PROJECT = REPO_ROOT / "bench" / "gateway-graph" / "langgraph.json"
DEFAULT_VENV = REPO_ROOT / "bench" / ".venv-langgraph-dev"
SYSTEMS = (("inprocess", "in-process ainvoke"), ("langgraph_dev", "langgraph dev"), ("graphmesh", "graphmesh gateway"),
           ("graphmesh_grpc", "graphmesh gRPC, same mesh"))
HTTP_TIMEOUT = 120.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_result(graph: str, values: object) -> bool:
    """The run finished with the graph's output (tiny writes a summary)."""
    return isinstance(values, dict) and (graph != "tiny" or "summary" in values)


# -- the load ----------------------------------------------------------------------------------

async def sdk_phase(url: str, api_key: str | None, graph: str, runs: int, concurrency: int, warmup: int,
                    on_thread: bool, on_measure=None) -> PhaseResult:
    from langgraph_sdk import get_client

    clients = [get_client(url=url, api_key=api_key, timeout=HTTP_TIMEOUT) for _ in range(concurrency)]

    async def run_one(k: int, i: int) -> Sample | None:
        client = clients[k]
        t0 = time.perf_counter()
        thread_id = (await client.threads.create())["thread_id"] if on_thread else None
        values = await client.runs.wait(thread_id, graph, input=bench_input(i))
        done = time.perf_counter() - t0
        if not check_result(graph, values):
            say(f"run {i} on {url} returned {str(values)[:300]}")
            return None
        return Sample(done, done)

    try:
        samples, failed, wall = await warm_then_measure(runs, concurrency, warmup, run_one, on_measure)
    finally:
        for client in clients:
            await client.aclose()
    return PhaseResult(url, "runs.wait", runs, concurrency, wall, failed, samples)


def measure(phase, groups: dict[str, int | None], *, database_url: str | None = None, **kwargs) -> dict:
    """One phase's figures; with database_url (the mesh's), also the api calls it made per run."""
    meter, cpu, began = CpuMeter(groups), {}, []

    def on_measure(begin: bool) -> None:
        if begin:
            began.append(time.time_ns())
            meter.start()
        else:
            cpu.update(meter.stop())

    result = asyncio.run(phase(**kwargs, on_measure=on_measure))
    out = summarize(result.summary(), cpu)
    if database_url and began:
        out["api_calls"] = api_calls(database_url, began[0], out["completed"])
    return out


def api_calls(database_url: str, since_ns: int, runs: int) -> dict[str, float]:
    """The api's RPCs per run from the measured runs on (its server spans in the trace store,
    flushed every 0.5 s: read after a pause, before the next phase makes more), by method.
    CreateRun is one per run by construction and is not read there: its span carries the
    run's id, and a stateless run's PurgeThread deletes the run's spans with it."""
    import psycopg

    time.sleep(3.0)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name, count(*) FROM gm_spans WHERE service = 'graphmesh-api' AND kind = 'SERVER' "
                            "AND start_ns >= %s AND name NOT LIKE '%%/CreateRun' GROUP BY name ORDER BY name",
                            (since_ns,)).fetchall()
    per_run = {name.rsplit("/", 1)[-1]: round(n / (runs or 1), 2) for name, n in rows}
    return {"CreateRun": 1.0, **per_run}


def summarize(s: dict, cpu: dict[str, float]) -> dict:
    per_run = {k: round(v * 1000 / (s["completed"] or 1), 2) for k, v in cpu.items()}
    return {"runs_per_s": s["runs_per_s"], "latency_ms": s["completed_ms"], "completed": s["completed"],
            "failed": s["failed"], "concurrency": s["concurrency"], "wall_s": s["wall_s"],
            "cpu_ms_per_run": per_run, "cpu_ms_per_run_total": round(sum(per_run.values()), 2) if per_run else None}


# -- in-process: a child process, so the driver's threads do not skew it -------------------------

def load_graph(project: Path, graph: str):
    """The graph as langgraph.json names it, compiled with no checkpointer."""
    import importlib.util

    from langgraph.graph import StateGraph

    target = json.loads(project.read_text())["graphs"][graph]
    target = target["path"] if isinstance(target, dict) else target
    file, _, attr = target.rpartition(":")
    path = (project.parent / file).resolve()
    spec = importlib.util.spec_from_file_location(f"bench_graph_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    obj = getattr(module, attr)
    return obj.compile() if isinstance(obj, StateGraph) else obj


async def inprocess_phase(graph: str, runs: int, concurrency: int, warmup: int, on_measure=None) -> PhaseResult:
    compiled = load_graph(PROJECT, graph)

    async def run_one(k: int, i: int) -> Sample | None:
        t0 = time.perf_counter()
        values = await compiled.ainvoke(bench_input(i))
        done = time.perf_counter() - t0
        return Sample(done, done) if check_result(graph, values) else None

    samples, failed, wall = await warm_then_measure(runs, concurrency, warmup, run_one, on_measure)
    return PhaseResult("in-process", "graph.ainvoke, no checkpointer", runs, concurrency, wall, failed, samples)


def inprocess_child(args) -> int:
    figures = measure(inprocess_phase, {"in-process": os.getpid()}, graph=args.graph, runs=args.runs,
                      concurrency=args.inprocess_child, warmup=args.warmup)
    print(json.dumps(figures))
    return 0


def run_inprocess(args, concurrency: int) -> dict:
    cmd = [sys.executable, __file__, "--inprocess-child", str(concurrency), "--graph", args.graph,
           "--runs", str(args.runs), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"in-process phase failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


# -- langgraph dev -------------------------------------------------------------------------------

def dev_project(work: Path) -> Path:
    """PROJECT's langgraph.json with absolute paths, in a directory of its own: `langgraph dev`
    resolves graph paths against its working directory and writes its .langgraph_api state
    there, which must not land in the repository."""
    data = json.loads(PROJECT.read_text())

    def absolute(target: str) -> str:
        file, _, attr = target.rpartition(":")
        return f"{(PROJECT.parent / file).resolve()}:{attr}"

    data["graphs"] = {name: absolute(t["path"] if isinstance(t, dict) else t) for name, t in data["graphs"].items()}
    data["dependencies"] = [str((PROJECT.parent / d).resolve()) if d.startswith(".") else d
                            for d in data.get("dependencies", [])]
    cwd = work / "langgraph-dev"
    cwd.mkdir()
    config = cwd / "langgraph.json"
    config.write_text(json.dumps(data, indent=2))
    return config


@contextmanager
def langgraph_dev(venv: Path, work: Path, n_jobs: int | None) -> Iterator[tuple[str, int]]:
    """`langgraph dev` on the project; yields (url, pid), stopped with its process group."""
    from bench.vs_langgraph_dev import serve_langgraph_dev

    with serve_langgraph_dev(venv, dev_project(work), work / "langgraph-dev.log", n_jobs, say) as served:
        yield served


# -- graphmesh -----------------------------------------------------------------------------------

@contextmanager
def graphmesh_gateway(work: Path, args) -> Iterator[tuple[str, str, str, dict[str, int | None], str]]:
    """A mesh with the gateway on the project; yields (gateway url, api address, API token, process groups,
    database url)."""
    from graphmesh.mesh import Mesh, MeshConfig

    data = work / "mesh"
    data.mkdir()
    mesh = Mesh(MeshConfig(data_dir=data, api_port=0, review_port=0, worker_base_port=0, review_web_port=None,
                           manifest=PROJECT, workers=args.workers, worker_concurrency=args.worker_concurrency,
                           gateway_port=0, gateway_replicas=args.gateway_replicas), report=lambda s: None)
    try:
        say("starting the mesh ...")
        mesh.start()
        token = mesh.create_token("bench", ["admin"], created_by="bench")[1]
        groups = {name: mesh.pid(name) for name in mesh.service_names}
        groups.update(nats=mesh.nats.pid if mesh.nats else None, postgres=mesh.postgres.pid if mesh.postgres else None)
        say(f"graphmesh gateway up at {mesh.gateway_url}")
        yield mesh.gateway_url, mesh.api_address, token, groups, mesh.database_url
    finally:
        mesh.stop()


# -- report --------------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(phase: dict) -> dict:
    out = {}
    for name, (top, bottom) in {"graphmesh / langgraph dev": ("graphmesh", "langgraph_dev"),
                                "graphmesh / in-process": ("graphmesh", "inprocess"),
                                "langgraph dev / in-process": ("langgraph_dev", "inprocess"),
                                "gateway / gRPC": ("graphmesh", "graphmesh_grpc")}.items():
        a, b = phase.get(top), phase.get(bottom)
        if a and b:
            out[name] = {"throughput": ratio(a["runs_per_s"], b["runs_per_s"]),
                         **{q: ratio(a["latency_ms"][q], b["latency_ms"][q]) for q in ("p50", "p99")}}
    return out


def render(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    v = report.get("langgraph_dev_versions", {})
    lines = [f"graph {cfg['graph']!r} from bench/gateway-graph/langgraph.json; runs.wait "
             f"({'threads.create + runs.wait on it' if cfg['on_thread'] else 'stateless: POST /runs/wait'}); "
             f"{cfg['runs']} runs per phase after {cfg['warmup']} warm-up",
             f"machine: {m['cpus_usable']} usable cores ({m['cpu_model'] or 'unknown cpu'}), Python {m['python']}; "
             f"load at start {m['loadavg_at_start']}; {report['date']}",
             f"graphmesh: {cfg['workers']} workers x {cfg['worker_concurrency']}, {cfg['gateway_replicas']} gateway "
             f"replica(s), auth on, Postgres fsync on; langgraph {m['packages'].get('langgraph')}"]
    if v:
        lines.append(f"langgraph dev: langgraph-api {v['langgraph-api']}, runtime-inmem {v['langgraph-runtime-inmem']}, "
                     f"langgraph {v['langgraph']}; in-memory, one process; n-jobs-per-worker "
                     f"{cfg['n_jobs_per_worker'] or 'not set'}")
    lines.append("")
    header = f"{'clients':<9}{'system':<30}{'runs/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/run':>12}{'failed':>8}"
    lines += [header, "-" * len(header)]
    for phase in report["phases"]:
        for key, label in SYSTEMS:
            r = phase.get(key)
            if not r:
                continue
            cpu = "-" if r["cpu_ms_per_run_total"] is None else f"{r['cpu_ms_per_run_total']:.1f}"
            lines.append(f"{phase['concurrency']:<9}{label:<30}{r['runs_per_s']:>8.1f}{r['latency_ms']['p50']:>9.1f}"
                         f"{r['latency_ms']['p99']:>9.1f}{cpu:>12}{r['failed']:>8}")
        for name, q in phase["ratios"].items():
            lines.append(f"{'':<9}{name:<30}{'x' + str(q['throughput']):>8}{'x' + str(q['p50']):>9}"
                         f"{'x' + str(q['p99']):>9}")
        lines.append("")
    for phase in report["phases"]:
        for key, label in SYSTEMS:
            if phase.get(key):
                cpu = phase[key]["cpu_ms_per_run"]
                lines.append(f"CPU ms/run at {phase['concurrency']} clients, {label}: "
                             + "  ".join(f"{k} {x:.2f}" for k, x in cpu.items()))
    for phase in report["phases"]:
        for key, label in SYSTEMS:
            calls = (phase.get(key) or {}).get("api_calls")
            if calls:
                lines.append(f"api calls/run at {phase['concurrency']} clients, {label}: {sum(calls.values()):.2f} ("
                             + "  ".join(f"{k} {x:.2f}" for k, x in calls.items()) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200, help="measured runs per system and concurrency (default 200)")
    p.add_argument("--concurrency", default="16", help="concurrent clients; a comma list runs each (default 16)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured runs first, per phase (default 20)")
    p.add_argument("--graph", default="tiny", help="graph of bench/gateway-graph/langgraph.json (default tiny)")
    p.add_argument("--on-thread", action="store_true", help="each run on a new thread (threads.create + runs.wait)")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                   help=f"langgraph dev's virtualenv, created on first use (default {DEFAULT_VENV.relative_to(REPO_ROOT)})")
    p.add_argument("--n-jobs-per-worker", type=int, help="passed to langgraph dev (not set: its own default)")
    p.add_argument("--workers", type=int, default=2, help="mesh worker processes (default 2)")
    p.add_argument("--worker-concurrency", type=int, default=8, help="runs per worker at once (default 8)")
    p.add_argument("--gateway-replicas", type=int, default=1, help="gateway processes (default 1)")
    p.add_argument("--skip", action="append", default=[], choices=[k for k, _ in SYSTEMS],
                   help="leave a system out (repeatable)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs of both servers)")
    p.add_argument("--inprocess-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inprocess_child:
        return inprocess_child(args)

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()  # before grpc is imported: the mesh forks while this process holds gRPC
    from bench.run_bench import machine_info
    from bench.vs_langgraph_dev import ensure_venv

    concurrencies = [int(c) for c in args.concurrency.split(",")]
    args.venv = args.venv.resolve()
    report = {"machine": machine_info(), "date": datetime.date.today().isoformat(),
              "config": {"runs": args.runs, "concurrency": concurrencies, "warmup": args.warmup, "graph": args.graph,
                         "on_thread": args.on_thread, "n_jobs_per_worker": args.n_jobs_per_worker,
                         "workers": args.workers, "worker_concurrency": args.worker_concurrency,
                         "gateway_replicas": args.gateway_replicas, "project": str(PROJECT.relative_to(REPO_ROOT))}}
    if "langgraph_dev" not in args.skip:
        report["langgraph_dev_versions"] = ensure_venv(args.venv, say)
    phases = {c: {"concurrency": c} for c in concurrencies}
    work = Path(tempfile.mkdtemp(prefix="graphmesh-bench-gateway-"))
    load = {"graph": args.graph, "runs": args.runs, "warmup": args.warmup, "on_thread": args.on_thread}
    started = time.perf_counter()
    try:
        if "inprocess" not in args.skip:
            for c in concurrencies:
                say(f"in-process: {args.warmup} warm-up + {args.runs} runs at {c} ...")
                phases[c]["inprocess"] = run_inprocess(args, c)
        if "langgraph_dev" not in args.skip:
            with langgraph_dev(args.venv, work, args.n_jobs_per_worker) as (url, pid):
                for c in concurrencies:
                    say(f"langgraph dev: {args.warmup} warm-up + {args.runs} runs at {c} ...")
                    phases[c]["langgraph_dev"] = measure(sdk_phase, {"langgraph-dev": pid, "clients": os.getpid()},
                                                         url=url, api_key=None, concurrency=c, **load)
        if "graphmesh" not in args.skip or "graphmesh_grpc" not in args.skip:
            with graphmesh_gateway(work, args) as (url, api, token, groups, database_url):
                groups = {"clients": os.getpid(), **groups}
                for c in concurrencies:
                    if "graphmesh" not in args.skip:
                        say(f"graphmesh gateway: {args.warmup} warm-up + {args.runs} runs at {c} ...")
                        phases[c]["graphmesh"] = measure(sdk_phase, groups, url=url, api_key=token, concurrency=c,
                                                         database_url=database_url, **load)
                    if "graphmesh_grpc" not in args.skip and args.graph == "tiny":
                        from bench.mesh_load import mesh_phase

                        say(f"graphmesh gRPC: {args.warmup} warm-up + {args.runs} runs at {c} ...")
                        os.environ["GRAPHMESH_TOKEN"] = token  # graphmesh.client's default credentials
                        phases[c]["graphmesh_grpc"] = measure(mesh_phase, groups, address=api, runs=args.runs,
                                                              concurrency=c, warmup=args.warmup,
                                                              database_url=database_url)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["phases"] = [{**phases[c], "ratios": ratios(phases[c])} for c in concurrencies]
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
