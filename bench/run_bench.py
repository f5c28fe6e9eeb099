"""graphmesh benchmark: the `tiny` graph through the mesh vs. in-process, on one Postgres.

One invocation:
  1. starts an embedded mesh (Postgres + NATS JetStream + api + review + W workers) in a
     temporary directory;
  2. mesh phase: N runs of `tiny` from C concurrent gRPC clients (CreateRun, then StreamRun
     until the terminal event), after a warm-up;
  2a. tracing-off phase: the services restart with GRAPHMESH_TRACING=0 and the same load
     runs again, so the cost of tracing (spans, the Postgres trace store) is measured in the
     same run, on the same machine state;
  2b. review phase (bench/review_latency.py): approval_workflow runs waiting for approval;
     latency from Decide(APPROVE) to the run's next RUNNING event, sequential and concurrent;
  3. stops the mesh's services (Postgres stays up) and runs the same graph in-process on the
     same Postgres, in a fresh child process each: "naive" (one shared AsyncPostgresSaver) and
     "fastest" (the best of several saver/connection layouts);
  4. prints a table (runs/s, p50/p99 create->completed and create->first-event, ratios) and,
     with --json, writes all figures and the machine description as JSON.

    .venv/bin/python bench/run_bench.py [--runs 200] [--concurrency 16] [--json out.json]
    .venv/bin/python bench/run_bench.py --only-review [--review-runs 50] [--review-concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from bench.review_latency import render_review  # noqa: E402
from bench.stats import PhaseResult  # noqa: E402


def machine_info() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("langgraph", "langgraph-checkpoint-postgres", "grpcio", "nats-py", "psycopg", "protobuf"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


def run_inprocess(database_url: str, mode: str, args, postgres_pid: int | None) -> list[PhaseResult]:
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "inprocess.py"), "--database-url", database_url,
           "--mode", mode, "--runs", str(args.runs), "--concurrency", str(args.concurrency),
           "--warmup", str(args.warmup), "--durability", getattr(args, "durability", "async")] \
        + (["--postgres-pid", str(postgres_pid)] if postgres_pid else [])
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process phase {mode} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    if proc.stderr.strip():
        print(proc.stderr.strip()[-2000:], file=sys.stderr)
    return [PhaseResult.from_json(d) for d in json.loads(proc.stdout)]


def _fmt(x, spec=".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def render(report: dict) -> str:
    m = report["machine"]
    cfg = report["config"]
    lines = [
        f"graphmesh benchmark — graph 'tiny' (3 nodes), {cfg['runs']} runs (+{cfg['warmup']} warm-up), "
        f"concurrency {cfg['concurrency']}",
        f"machine: {m['cpus_usable']} usable cores ({m['cpu_model'] or 'unknown cpu'}), Python {m['python']}, "
        f"{m['platform']}; load at start {m['loadavg_at_start']}",
        f"mesh: {cfg['workers']} workers x concurrency {cfg['worker_concurrency']}; Postgres "
        f"{'fsync=off, synchronous_commit=off (fast)' if cfg['fast_postgres'] else 'fsync=on, synchronous_commit=on'} "
        f"(same server for every phase)",
        "",
    ]
    header = f"{'phase':<22}{'runs/s':>9}{'done p50':>10}{'done p99':>10}{'first p50':>11}{'first p99':>11}{'failed':>8}"
    lines += [header + "   (latencies in ms)", "-" * len(header)]
    rows = [("mesh", report["mesh"])]
    if report.get("mesh_tracing_off"):
        rows.append(("mesh, tracing off", report["mesh_tracing_off"]))
    rows.append(("in-process naive", report["naive"]))
    rows += [(f"  {v['name']}", v) for v in report["fastest_variants"]]
    rows.append(("in-process fastest", report["fastest"]))
    for label, r in rows:
        lines.append(
            f"{label:<22}{_fmt(r['runs_per_s']):>9}{_fmt(r['completed_ms']['p50']):>10}"
            f"{_fmt(r['completed_ms']['p99']):>10}{_fmt(r['first_event_ms']['p50']):>11}"
            f"{_fmt(r['first_event_ms']['p99']):>11}{r['failed']:>8}"
        )
    fn = report["mesh"].get("first_node_event_ms")
    if fn:
        lines.append(f"(mesh first event = the QUEUED status event; first node event: p50 {_fmt(fn['p50'])} ms, "
                     f"p99 {_fmt(fn['p99'])} ms)")
    lines.append("")
    stages = report["mesh"].get("extra", {}).get("stages_ms")
    if stages:
        lines.append("mesh latency by stage (ms; means add up to the mean create->completed):")
        for name, st in stages.items():
            lines.append(f"  {name:<14} p50 {st['p50']:7.2f}  p99 {st['p99']:7.2f}  mean {st['mean']:7.2f}   {st['what']}")
        lines.append("")
    cpu_rows = [(label, r) for label, r in rows if r.get("extra", {}).get("cpu_s") and label != "in-process fastest"]
    if cpu_rows:
        lines.append("CPU per run (ms, measured runs only; bench-clients = this driver's gRPC clients):")
        for label, r in cpu_rows:
            cpu = r["extra"]["cpu_s"]
            n = max(r["completed"], 1)
            parts = "  ".join(f"{k} {v * 1000 / n:.2f}" for k, v in cpu.items())
            lines.append(f"  {label.strip():<20} total {sum(cpu.values()) * 1000 / n:6.2f} = {parts}")
        lines.append("")
    for ref in ("fastest", "naive"):
        c = report["comparison"][ref]
        lines.append(
            f"mesh vs {ref:<8} throughput x{_fmt(c['throughput_ratio'], '.2f')}   "
            f"done p50 {_fmt(c['completed_p50_delta_ms'], '+.1f')} ms (x{_fmt(c['completed_p50_ratio'], '.2f')})   "
            f"done p99 {_fmt(c['completed_p99_delta_ms'], '+.1f')} ms   "
            f"first p50 {_fmt(c['first_event_p50_delta_ms'], '+.1f')} ms"
        )
    if report.get("tracing_cost"):
        c = report["tracing_cost"]
        lines.append(
            f"tracing on vs off: throughput x{_fmt(c['throughput_ratio'], '.2f')}   "
            f"done p50 {_fmt(c['completed_p50_delta_ms'], '+.1f')} ms   done p99 {_fmt(c['completed_p99_delta_ms'], '+.1f')} ms")
    t = report["targets"]
    lines += [
        "",
        f"target: mesh throughput >= fastest in-process: {'MET' if t['throughput_met'] else 'NOT MET'}",
        f"target: mesh p50 <= fastest in-process p50 + 5 ms: {'MET' if t['latency_met'] else 'NOT MET'}",
    ]
    return "\n".join(lines)


def compare(mesh: dict, ref: dict) -> dict:
    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    def delta(a, b):
        return round(a - b, 2) if a is not None and b is not None else None

    return {
        "throughput_ratio": ratio(mesh["runs_per_s"], ref["runs_per_s"]),
        "completed_p50_ratio": ratio(mesh["completed_ms"]["p50"], ref["completed_ms"]["p50"]),
        "completed_p50_delta_ms": delta(mesh["completed_ms"]["p50"], ref["completed_ms"]["p50"]),
        "completed_p99_delta_ms": delta(mesh["completed_ms"]["p99"], ref["completed_ms"]["p99"]),
        "first_event_p50_delta_ms": delta(mesh["first_event_ms"]["p50"], ref["first_event_ms"]["p50"]),
        "first_event_p99_delta_ms": delta(mesh["first_event_ms"]["p99"], ref["first_event_ms"]["p99"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200, help="measured runs per phase (default 200)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients / in-process runs (default 16)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up runs per phase, not measured (default 20)")
    p.add_argument("--workers", type=int, default=2, help="mesh worker processes (default 2)")
    p.add_argument("--worker-concurrency", type=int, default=8, help="runs per worker at once (default 8)")
    p.add_argument("--fast-postgres", action="store_true",
                   help="run Postgres with fsync=off/synchronous_commit=off (default: fsync on, as `graphmesh up`)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH ('-' = stdout, no table)")
    p.add_argument("--skip-mesh", action="store_true", help="in-process phases only (still starts Postgres via the mesh)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (service logs) for inspection")
    p.add_argument("--log-level", default="INFO", help="mesh services' log level (default INFO, as deployed)")
    p.add_argument("--review-runs", type=int, default=50,
                   help="approval_workflow decisions per review mode (Decide -> RUNNING latency; 0 = skip; default 50)")
    p.add_argument("--review-concurrency", type=int, default=8,
                   help="concurrent reviewers in the review phase's second batch (<= 1 = sequential only; default 8)")
    p.add_argument("--skip-tracing-off", action="store_true",
                   help="skip the second mesh phase with tracing off (the cost-of-tracing figure)")
    p.add_argument("--only-review", action="store_true",
                   help="start the mesh and run only the review phase (no tiny mesh phase, no in-process phases)")
    args = p.parse_args(argv)
    if args.only_review and args.review_runs <= 0:
        p.error("--only-review needs --review-runs > 0")
    say = (lambda s: print(s, file=sys.stderr)) if args.json == "-" else (lambda s: print(s, file=sys.stderr, flush=True))

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()  # before grpc is imported: the mesh forks while this process holds gRPC
    from graphmesh.mesh import Mesh, MeshConfig

    os.chdir(REPO_ROOT)
    machine = machine_info()
    data_dir = Path(tempfile.mkdtemp(prefix="graphmesh-bench-"))
    mesh = Mesh(MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0,
                           workers=args.workers, worker_concurrency=args.worker_concurrency,
                           fast_postgres=args.fast_postgres, log_level=args.log_level),
                report=lambda s: None)
    t_start = time.perf_counter()
    try:
        say(f"starting mesh in {data_dir} ...")
        mesh.start()
        # Authentication stays on, as deployed: the load runs with an admin API token.
        os.environ["GRAPHMESH_TOKEN"] = mesh.create_token("bench", ["admin"], created_by="bench")[1]
        say(f"mesh up in {time.perf_counter() - t_start:.1f}s: api {mesh.api_address}, db {mesh.database_url}")
        mesh_result = untraced = None
        review = None
        pg_pid = mesh.postgres.pid if mesh.postgres else None
        if not args.skip_mesh and not args.only_review:
            from bench.mesh_load import mesh_phase

            say(f"mesh phase: {args.warmup} warm-up + {args.runs} runs, concurrency {args.concurrency} ...")
            groups = {"bench-clients": os.getpid(), **{n: mesh.pid(n) for n in mesh.service_names},
                      "nats": mesh.nats.pid if mesh.nats else None, "postgres": pg_pid}
            meter = CpuMeter(groups)
            cpu: dict = {}
            mesh_result = asyncio.run(mesh_phase(
                mesh.api_address, args.runs, args.concurrency, args.warmup,
                on_measure=lambda begin: meter.start() if begin else cpu.update(meter.stop())))
            mesh_result.extra["cpu_s"] = cpu
            say(f"  {mesh_result.throughput:.1f} runs/s")
            if not args.skip_tracing_off:
                say("mesh phase again with tracing off ...")
                untraced = _untraced_phase(mesh, args)
                say(f"  {untraced.throughput:.1f} runs/s")
        if args.review_runs > 0 and (not args.skip_mesh or args.only_review):
            from bench.review_latency import review_phase

            review = asyncio.run(review_phase(
                mesh.api_address, mesh.review_address, args.review_runs, args.review_concurrency,
                warmup=min(args.warmup, 3), say=lambda s: say(s)))
        if args.only_review:
            report = {"machine": machine,
                      "config": {"workers": args.workers, "worker_concurrency": args.worker_concurrency,
                                 "fast_postgres": args.fast_postgres, "mesh_log_level": args.log_level,
                                 "review_runs": args.review_runs, "review_concurrency": args.review_concurrency},
                      "review": review, "total_seconds": round(time.perf_counter() - t_start, 1)}
            _emit(report, args, render_review(review))
            return 0
        # In-process phases get the machine to themselves: stop the services, keep Postgres.
        for name in mesh.service_names:
            mesh.stop_service(name)
        say("in-process naive ...")
        naive = run_inprocess(mesh.database_url, "naive", args, pg_pid)[0]
        say(f"  {naive.throughput:.1f} runs/s")
        say("in-process fastest variants ...")
        variants = run_inprocess(mesh.database_url, "fastest", args, pg_pid)
        for v in variants:
            say(f"  {v.name}: {v.throughput:.1f} runs/s")
    finally:
        mesh.stop()
        if args.keep:
            say(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    fastest = max(variants, key=lambda v: v.throughput)
    empty = {"runs_per_s": None, "completed_ms": {"p50": None, "p99": None},
             "first_event_ms": {"p50": None, "p99": None}, "failed": 0}
    mesh_s = mesh_result.summary() if mesh_result else empty
    report = {
        "machine": machine,
        "config": {"runs": args.runs, "warmup": args.warmup, "concurrency": args.concurrency,
                   "workers": args.workers, "worker_concurrency": args.worker_concurrency,
                   "fast_postgres": args.fast_postgres, "mesh_log_level": args.log_level, "graph": "tiny",
                   "review_runs": args.review_runs, "review_concurrency": args.review_concurrency},
        "mesh": mesh_s,
        "naive": naive.summary(),
        "fastest": {**fastest.summary(), "variant": fastest.name},
        "fastest_variants": [v.summary() for v in variants],
        "review": review,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    if untraced:
        report["mesh_tracing_off"] = untraced.summary()
        report["tracing_cost"] = compare(mesh_s, report["mesh_tracing_off"])
    if mesh_result:
        report["comparison"] = {"fastest": compare(mesh_s, report["fastest"]), "naive": compare(mesh_s, report["naive"])}
        report["targets"] = {
            "throughput_met": mesh_s["runs_per_s"] >= report["fastest"]["runs_per_s"],
            "latency_met": mesh_s["completed_ms"]["p50"] <= report["fastest"]["completed_ms"]["p50"] + 5,
        }
    if mesh_result:
        table = render(report)
    else:
        table = json.dumps({k: report[k] for k in ("naive", "fastest_variants")}, indent=2)
    if review:
        table += "\n\n" + render_review(review)
    _emit(report, args, table)
    return 0


def _untraced_phase(mesh, args):
    """The mesh phase once more, every service restarted with tracing off; tracing is
    switched back on afterwards for the review phase."""
    from bench.mesh_load import mesh_phase

    def restart(tracing: str) -> None:
        mesh.config.extra_env["GRAPHMESH_TRACING"] = tracing
        for name in mesh.service_names:
            mesh.restart_service(name)

    restart("0")
    try:
        return asyncio.run(mesh_phase(mesh.api_address, args.runs, args.concurrency, args.warmup))
    finally:
        restart("1")


def _emit(report: dict, args, table: str) -> None:
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(table)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
