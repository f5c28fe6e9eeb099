"""Side by side: the `tiny` graph under `langgraph dev` (in-memory) and under a graphmesh mesh.

Same graph (graphs/tiny.py, copied as is into a throwaway langgraph project), same load, one
system at a time. langgraph dev (langgraph-cli[inmem]) runs from its own venv, created on first
use with graphmesh's langgraph version (--venv); per run a client does POST /threads, then
POST /threads/{id}/runs/wait (httpx, from this process). The mesh starts as in run_bench.py
(auth on, tracing on, 2 workers, Postgres fsync on); per run CreateRun, then StreamRun to the
terminal event. Per system: warm-up, N runs from C clients, then N' runs from 1 client;
runs/s, create->completed p50/p99, CPU ms per run, and the ratios graphmesh/langgraph dev.

    .venv/bin/python bench/vs_langgraph_dev.py [--runs 200] [--concurrency 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.inprocess import bench_input, warm_then_measure  # noqa: E402
from bench.stats import PhaseResult, Sample  # noqa: E402

DEV_PACKAGES = ("langgraph-cli", "langgraph-api", "langgraph-runtime-inmem", "langgraph", "langgraph-checkpoint")
SYSTEMS = (("langgraph_dev", "langgraph dev"), ("graphmesh", "graphmesh"))
TARGET = 2.5  # issue 16: graphmesh >= 2.5x langgraph dev's runs/s at 16 clients


def ensure_venv(venv: Path, say) -> dict:
    """The langgraph dev environment, created and installed on first use; its package versions."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "langgraph").exists():
        wanted = ["langgraph-cli[inmem]", f"langgraph=={metadata.version('langgraph')}"]  # graphmesh's langgraph
        say(f"creating {venv}: pip install {' '.join(wanted)} (once) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *wanted],
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"pip install into {venv} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
        say("\n".join(f"  {line}" for line in proc.stdout.splitlines() if line.startswith("Successfully installed")))
    code = ("import json; from importlib import metadata as m; "
            f"print(json.dumps({{p: m.version(p) for p in {list(DEV_PACKAGES)!r}}}))")
    return json.loads(subprocess.check_output([str(python), "-c", code], text=True))


@contextmanager
def langgraph_dev(venv: Path, work: Path, n_jobs: int | None, say):
    """`langgraph dev` on a throwaway project serving graphs/tiny.py as "tiny"; yields (url, pid)."""
    project = work / "langgraph-project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "graphs" / "tiny.py", project / "graph.py")
    (project / "langgraph.json").write_text(json.dumps({"dependencies": ["."], "graphs": {"tiny": "./graph.py:graph"}}))
    with serve_langgraph_dev(venv, project / "langgraph.json", work / "langgraph-dev.log", n_jobs, say) as served:
        yield served


@contextmanager
def serve_langgraph_dev(venv: Path, config: Path, log_path: Path, n_jobs: int | None, say):
    """`langgraph dev --config CONFIG` from the venv, in CONFIG's directory (where it keeps its
    .langgraph_api state); yields (url, pid) once /ok answers; stops its process group."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(venv / "bin" / "langgraph"), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
           "--no-reload", "--config", str(config)] + (["--n-jobs-per-worker", str(n_jobs)] if n_jobs else [])
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
           "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    env.pop("PYTHONPATH", None)  # graphmesh's own path must not shadow the venv's packages
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=config.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: stopped as a whole
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"langgraph dev did not come up (exit {proc.returncode}):\n"
                                       + log_path.read_text(errors="replace")[-3000:])
                try:
                    if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            say(f"langgraph dev up at {url} (log {log_path})")
            yield url, proc.pid
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass


async def langgraph_phase(url: str, runs: int, concurrency: int, warmup: int, on_measure=None) -> PhaseResult:
    """Per run: POST /threads, POST /threads/{id}/runs/wait; timed from the first request to the result."""
    import httpx

    clients = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(concurrency)]

    async def run_one(k: int, i: int) -> Sample | None:
        client = clients[k]
        t0 = time.perf_counter()
        thread = (await client.post("/threads", json={})).raise_for_status().json()
        reply = await client.post(f"/threads/{thread['thread_id']}/runs/wait",
                                  json={"assistant_id": "tiny", "input": bench_input(i)})
        done = time.perf_counter() - t0
        values = reply.raise_for_status().json()
        if "summary" not in values:
            print(f"langgraph dev run {i} returned {str(values)[:300]}", file=sys.stderr)
            return None
        return Sample(done, done)

    try:
        samples, failed, wall = await warm_then_measure(runs, concurrency, warmup, run_one, on_measure)
    finally:
        for c in clients:
            await c.aclose()
    return PhaseResult("langgraph dev", "POST /threads + /threads/{id}/runs/wait over HTTP", runs, concurrency,
                       wall, failed, samples)


def run_phases(phase_fn, address: str, groups: dict, args, label: str, say) -> dict:
    out = {}
    for phase, concurrency, warmup, runs in (("concurrent", args.concurrency, args.warmup, args.runs),
                                             ("sequential", 1, min(args.warmup, 5), args.sequential_runs)):
        say(f"{label}: {warmup} warm-up + {runs} runs, {concurrency} client(s) ...")
        meter, cpu = CpuMeter(groups), {}
        s = asyncio.run(phase_fn(address, runs, concurrency, warmup, on_measure=lambda begin: meter.start()
                                 if begin else cpu.update(meter.stop()))).summary()
        per_run = {k: round(v * 1000 / (s["completed"] or 1), 2) for k, v in cpu.items()}
        out[phase] = {"runs_per_s": s["runs_per_s"], "completed_ms": s["completed_ms"], "completed": s["completed"],
                      "failed": s["failed"], "concurrency": concurrency, "cpu_ms_per_run": per_run,
                      "cpu_ms_per_run_total": round(sum(per_run.values()), 2) if per_run else None}
        say(f"  {s['runs_per_s']:.1f} runs/s, p50 {s['completed_ms']['p50']} ms")
    return out


def ratios(mesh: dict, dev: dict) -> dict:
    pairs = {"throughput": (mesh["runs_per_s"], dev["runs_per_s"]),
             **{q: (mesh["completed_ms"][q], dev["completed_ms"][q]) for q in ("p50", "p99")}}
    return {k: round(a / b, 2) if a is not None and b else None for k, (a, b) in pairs.items()}


def render(report: dict) -> str:
    m, cfg, v = report["machine"], report["config"], report["langgraph_dev_versions"]
    lines = [f"graph 'tiny' (3 nodes): {cfg['runs']} runs at {cfg['concurrency']} clients (+{cfg['warmup']} warm-up), "
             f"then {cfg['sequential_runs']} runs from 1 client",
             f"machine: {m['cpus_usable']} usable cores ({m['cpu_model'] or 'unknown cpu'}), Python {m['python']}; "
             f"load at start {m['loadavg_at_start']}",
             f"langgraph dev: langgraph-api {v['langgraph-api']}, runtime-inmem {v['langgraph-runtime-inmem']}, "
             f"langgraph {v['langgraph']}; in-memory, one process, n-jobs-per-worker "
             f"{cfg['n_jobs_per_worker'] or 'not set (langgraph dev then runs 1 job at a time)'}",
             f"graphmesh: {cfg['workers']} workers x {cfg['worker_concurrency']}, auth on, tracing on, Postgres fsync on; "
             f"langgraph {m['packages'].get('langgraph')}", ""]
    header = f"{'clients':<9}{'system':<26}{'runs/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/run':>12}{'failed':>8}"
    lines += [header, "-" * len(header)]
    for phase in ("concurrent", "sequential"):
        clients = str(report["graphmesh"][phase]["concurrency"])
        for key, label in SYSTEMS:
            r = report[key][phase]
            cpu = "-" if r["cpu_ms_per_run_total"] is None else f"{r['cpu_ms_per_run_total']:.1f}"
            lines.append(f"{clients:<9}{label:<26}{r['runs_per_s']:>8.1f}{r['completed_ms']['p50']:>9.1f}"
                         f"{r['completed_ms']['p99']:>9.1f}{cpu:>12}{r['failed']:>8}")
        q = report["ratios"][phase]
        lines.append(f"{'':<9}{'graphmesh / langgraph dev':<26}{'x' + str(q['throughput']):>8}{'x' + str(q['p50']):>9}"
                     f"{'x' + str(q['p99']):>9}")
    lines.append("")
    for key, label in SYSTEMS:
        cpu = report[key]["concurrent"]["cpu_ms_per_run"]
        lines.append(f"CPU ms/run at {cfg['concurrency']} clients, {label}: "
                     + "  ".join(f"{k} {x:.2f}" for k, x in cpu.items()))
    t = report["target"]
    lines.append(f"\ntarget (issue 16): graphmesh runs/s >= {TARGET}x langgraph dev's at {cfg['concurrency']} clients: "
                 f"{'MET' if t['met'] else 'NOT MET'} (x{t['ratio']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200, help="measured runs at --concurrency (default 200)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured runs first, per system (default 20)")
    p.add_argument("--sequential-runs", type=int, default=50, help="measured runs from 1 client (default 50)")
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "graphmesh-bench-langgraph-dev",
                   help="langgraph dev's venv, created on first use (default /tmp/graphmesh-bench-langgraph-dev)")
    p.add_argument("--n-jobs-per-worker", type=int,
                   help="passed to langgraph dev (not set: it runs 1 run at a time, whatever its --help says)")
    p.add_argument("--workers", type=int, default=2, help="mesh worker processes (default 2)")
    p.add_argument("--worker-concurrency", type=int, default=8, help="runs per worker at once (default 8)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (both systems' logs)")
    args = p.parse_args(argv)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()  # before grpc is imported: the mesh forks while this process holds gRPC
    from bench.mesh_load import mesh_phase
    from bench.run_bench import machine_info
    from graphmesh.mesh import Mesh, MeshConfig

    os.chdir(REPO_ROOT)
    args.venv = args.venv.resolve()
    machine = machine_info()
    versions = ensure_venv(args.venv, say)
    work = Path(tempfile.mkdtemp(prefix="graphmesh-vs-langgraph-dev-"))
    report = {"machine": machine, "langgraph_dev_versions": versions,
              "config": {"runs": args.runs, "concurrency": args.concurrency, "warmup": args.warmup,
                         "sequential_runs": args.sequential_runs, "n_jobs_per_worker": args.n_jobs_per_worker,
                         "workers": args.workers, "worker_concurrency": args.worker_concurrency, "graph": "tiny"}}
    started = time.perf_counter()
    try:
        with langgraph_dev(args.venv, work, args.n_jobs_per_worker, say) as (url, pid):
            groups = {"langgraph-dev": pid, "clients": os.getpid()}
            report["langgraph_dev"] = run_phases(langgraph_phase, url, groups, args, "langgraph dev", say)
        (work / "mesh").mkdir()
        mesh = Mesh(MeshConfig(data_dir=work / "mesh", api_port=0, review_port=0, worker_base_port=0,
                               workers=args.workers, worker_concurrency=args.worker_concurrency,
                               review_web_port=None), report=lambda s: None)
        try:
            say("starting the mesh ...")
            mesh.start()
            os.environ["GRAPHMESH_TOKEN"] = mesh.create_token("bench", ["admin"], created_by="bench")[1]
            groups = {"clients": os.getpid(), **{n: mesh.pid(n) for n in mesh.service_names},
                      "nats": mesh.nats.pid if mesh.nats else None,
                      "postgres": mesh.postgres.pid if mesh.postgres else None}
            report["graphmesh"] = run_phases(mesh_phase, mesh.api_address, groups, args, "graphmesh", say)
        finally:
            mesh.stop()
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["ratios"] = {ph: ratios(report["graphmesh"][ph], report["langgraph_dev"][ph])
                        for ph in ("concurrent", "sequential")}
    ratio = report["ratios"]["concurrent"]["throughput"]
    report["target"] = {"ratio": ratio, "wanted": TARGET, "met": ratio is not None and ratio >= TARGET}
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
