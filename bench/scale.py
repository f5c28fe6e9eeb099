"""Scale-out benchmark: the same load on meshes of 1, 2, 4 ... workers and api replicas.

For each shape WxA (W workers, A api replicas) a fresh mesh starts (embedded Postgres and
NATS, auth on, tracing on, as deployed), C clients put N `tiny` runs through it (each
client: CreateRun then StreamRun to the terminal event), and the table reports runs/s,
create->completed percentiles, and CPU-seconds per run by process kind (api replicas
summed, workers summed, review, NATS, Postgres, the benchmark's clients): the figure that
predicts what a bigger machine buys. The in-process baseline (LangGraph alone on the same
Postgres, the fastest variant of bench/inprocess.py) is measured in the same invocation.

    .venv/bin/python bench/scale.py                                   # 1x1 2x1 4x1 2x2 4x2
    .venv/bin/python bench/scale.py --shapes 1x1,8x1,8x2,8x4 --concurrency 64 --runs 1000
    .venv/bin/python bench/scale.py --json scale.json

No thresholds: it reports. Where throughput stops growing, the CPU column that grew with it
(or the machine's cores, printed first) says why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.cpu import CpuMeter  # noqa: E402

KINDS = ("api", "worker", "review", "nats", "postgres", "clients")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        workers, _, replicas = item.strip().partition("x")
        if not (workers.isdigit() and replicas.isdigit()) or int(workers) < 1 or int(replicas) < 1:
            raise argparse.ArgumentTypeError(f"a shape is WORKERSxAPI_REPLICAS, e.g. 4x2; got {item!r}")
        shapes.append((int(workers), int(replicas)))
    return shapes


def by_kind(cpu: dict[str, float], mesh) -> dict[str, float]:
    """Per-process CPU seconds summed by kind (api-2 -> api, worker-3 -> worker)."""
    kinds = dict.fromkeys(KINDS, 0.0)
    for name, seconds in cpu.items():
        kind = "clients" if name == "clients" else name if name in ("nats", "postgres", "review") else \
            "api" if name in mesh.api_replica_names else "worker"
        kinds[kind] += seconds
    return kinds


def bench_manifest(data_dir: Path, durability: str) -> Path:
    """The example manifest with the benchmark graph's durability set."""
    import yaml

    from graphmesh.mesh import REPO_ROOT as ROOT

    manifest = yaml.safe_load((ROOT / "graphmesh" / "examples.yaml").read_text())
    for graph in manifest["graphs"]:
        if graph["name"] == "tiny":
            graph["durability"] = durability
    path = data_dir / "bench-graphs.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def run_shape(workers: int, replicas: int, args, say) -> tuple[dict, object]:
    from bench.mesh_load import mesh_phase
    from graphmesh.mesh import Mesh, MeshConfig

    data_dir = Path(tempfile.mkdtemp(prefix=f"graphmesh-scale-{workers}x{replicas}-"))
    mesh = Mesh(MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0, workers=workers,
                           api_replicas=replicas, worker_concurrency=args.worker_concurrency,
                           manifest=bench_manifest(data_dir, args.durability),
                           fast_postgres=args.fast_postgres, review_web_port=None), report=lambda s: None)
    try:
        mesh.start()
        os.environ["GRAPHMESH_TOKEN"] = mesh.create_token("bench", ["admin"], created_by="bench")[1]
        groups = {"clients": os.getpid(), **{n: mesh.pid(n) for n in mesh.service_names},
                  "nats": mesh.nats.pid, "postgres": mesh.postgres.pid}
        meter = CpuMeter(groups)
        cpu: dict = {}
        result = asyncio.run(mesh_phase(mesh.api_address, args.runs, args.concurrency, args.warmup,
                                        on_measure=lambda begin: meter.start() if begin else cpu.update(meter.stop())))
        summary = result.summary()
        done = summary["completed"] or 1
        per_run = {k: round(v / done * 1000, 2) for k, v in by_kind(cpu, mesh).items()}
        shape = {"workers": workers, "api_replicas": replicas, "runs_per_s": summary["runs_per_s"],
                 "completed_ms": summary["completed_ms"], "failed": summary["failed"],
                 "cpu_ms_per_run": per_run, "cpu_ms_per_run_total": round(sum(per_run.values()), 2),
                 "database_url": mesh.database_url, "postgres_pid": mesh.postgres.pid}
        say(f"  {workers}x{replicas}: {shape['runs_per_s']:.1f} runs/s, CPU {shape['cpu_ms_per_run_total']:.1f} ms/run")
        return shape, mesh
    except BaseException:
        mesh.stop()
        raise


def inprocess_baseline(database_url: str, postgres_pid: int, args) -> dict:
    from bench.run_bench import run_inprocess

    phases = run_inprocess(database_url, "fastest", SimpleNamespace(
        runs=args.runs, concurrency=args.concurrency, warmup=args.warmup, durability=args.durability), postgres_pid)
    best = max(phases, key=lambda p: p.throughput)
    summary = best.summary()
    cpu = best.extra.get("cpu_s", {})
    done = summary["completed"] or 1
    return {"variant": best.name, "runs_per_s": summary["runs_per_s"], "completed_ms": summary["completed_ms"],
            "cpu_ms_per_run_total": round(sum(cpu.values()) / done * 1000, 2) if cpu else None}


def render(report: dict) -> str:
    base = report["inprocess"]
    lines = [f"machine: {report['cores']} cores; {report['runs']} runs per shape, {report['concurrency']} clients; "
             f"durability {report['durability']}",
             f"in-process ({base['variant']}): {base['runs_per_s']:.1f} runs/s, p50 {base['completed_ms']['p50']} ms"
             + (f", CPU {base['cpu_ms_per_run_total']} ms/run" if base["cpu_ms_per_run_total"] else ""),
             "",
             f"{'shape':>6} {'runs/s':>7} {'x in-proc':>9} {'p50 ms':>7} {'p99 ms':>7} | CPU ms/run: "
             + " ".join(f"{k:>8}" for k in KINDS) + f" {'total':>7}"]
    for s in report["shapes"]:
        cpu = s["cpu_ms_per_run"]
        lines.append(f"{s['workers']}x{s['api_replicas']:<4} {s['runs_per_s']:>7.1f} "
                     f"{s['runs_per_s'] / base['runs_per_s']:>9.2f} {s['completed_ms']['p50']:>7} "
                     f"{s['completed_ms']['p99']:>7} |             " + " ".join(f"{cpu[k]:>8.2f}" for k in KINDS)
                     + f" {s['cpu_ms_per_run_total']:>7.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=parse_shapes, default=parse_shapes("1x1,2x1,4x1,2x2,4x2"),
                   help="WORKERSxAPI_REPLICAS, comma-separated (default 1x1,2x1,4x1,2x2,4x2)")
    p.add_argument("--runs", type=int, default=200, help="measured runs per shape (default 200)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured runs first, per shape (default 20)")
    p.add_argument("--worker-concurrency", type=int, default=8, help="runs per worker at once (default 8)")
    p.add_argument("--fast-postgres", action="store_true", help="Postgres with fsync off")
    p.add_argument("--durability", default="async", choices=["async", "sync", "exit"],
                   help="the benchmark graph's durability, in the mesh and in the baseline (default async)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()  # before grpc is imported: the meshes fork while this process holds gRPC
    os.chdir(REPO_ROOT)
    report = {"cores": os.cpu_count(), "runs": args.runs, "concurrency": args.concurrency,
              "durability": args.durability, "shapes": []}
    started = time.perf_counter()
    for i, (workers, replicas) in enumerate(args.shapes):
        say(f"shape {workers} worker(s) x {replicas} api replica(s) ...")
        shape, mesh = run_shape(workers, replicas, args, say)
        try:
            if i == 0:  # the baseline on the same Postgres server, in the same invocation
                say("in-process baseline ...")
                report["inprocess"] = inprocess_baseline(shape["database_url"], shape["postgres_pid"], args)
        finally:
            mesh.stop()
        report["shapes"].append({k: v for k, v in shape.items() if k not in ("database_url", "postgres_pid")})
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
