"""Where a run's CPU goes: py-spy samples the api and a worker while the mesh is under load.

    .venv/bin/pip install py-spy            # not a dependency of graphmesh itself
    .venv/bin/python bench/profile.py                      # 2 workers, 16 clients, 15 s of samples
    .venv/bin/python bench/profile.py --seconds 30 --keep   # keep the raw stacks (flamegraph input)

For each sampled process it prints the share of its busy samples spent in each stage
(inclusive: a stage's function anywhere on the stack) and the hottest leaf functions
(self time). Stages are matched by the function names in STAGES; what matches none is
"other". CPU seconds per run by process come from bench/run_bench.py and bench/scale.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

# stage -> patterns over "function (file)" frames; the first stage that matches a stack wins,
# so the more specific stages come first.
STAGES = {
    "tracing (OpenTelemetry spans, export)": r"opentelemetry/(sdk|exporter|instrumentation)|span_store",
    "auth (token lookup, principal)": r"graphmesh/auth/|auth_interceptor",
    "checkpointer (langgraph-checkpoint-postgres)": r"langgraph/checkpoint/|execution/saver",
    "langgraph (graph execution)": r"langgraph/pregel|langgraph/graph|langchain_core",
    "postgres client (psycopg, pool)": r"psycopg",
    "nats client (publish, fetch, ack)": r"nats/|graphmesh/bus/",
    "protobuf / json conversion": r"google/protobuf|json_format|graphmesh/messages|jsonvalues|json/(encoder|decoder)",
    "grpc (server, channels)": r"grpc/",
    "asyncio event loop": r"asyncio/",
}


def profile_pid(pid: int, seconds: int, out: Path) -> None:
    subprocess.run(["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                    "--format", "raw", "--output", str(out), "--nonblocking"],
                   check=True, capture_output=True, timeout=seconds + 60)


def summarize(raw: Path, top: int) -> str:
    stages: collections.Counter = collections.Counter()
    leaves: collections.Counter = collections.Counter()
    total = 0
    compiled = {name: re.compile(pattern) for name, pattern in STAGES.items()}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaves[frames[-1]] += n
        stage = next((name for name, rx in compiled.items() if rx.search(stack)), "other")
        stages[stage] += n
    if not total:
        return "  (no samples)"
    lines = [f"  {total} busy samples"]
    lines += [f"  {100 * n / total:5.1f}%  {stage}" for stage, n in stages.most_common()]
    lines.append("  hottest functions (self):")
    lines += [f"  {100 * n / total:5.1f}%  {frame[:110]}" for frame, n in leaves.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=15, help="sampling time (default 15)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--top", type=int, default=15, help="hottest functions shown per process")
    p.add_argument("--keep", action="store_true", help="keep the raw stacks and print where")
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"

    from graphmesh.grpc_fork import keep_grpc_fork_support_off

    keep_grpc_fork_support_off()
    from bench.mesh_load import mesh_phase
    from graphmesh.mesh import Mesh, MeshConfig

    os.chdir(REPO_ROOT)
    data_dir = Path(tempfile.mkdtemp(prefix="graphmesh-profile-"))
    mesh = Mesh(MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0, workers=args.workers,
                           review_web_port=None), report=lambda s: None)
    with mesh:
        os.environ["GRAPHMESH_TOKEN"] = mesh.create_token("bench", ["admin"], created_by="bench")[1]
        targets = {"api": mesh.pid("api"), "worker-1": mesh.pid("worker-1")}
        outputs = {name: data_dir / f"{name}.stacks" for name in targets}

        def sample() -> None:
            threads = [threading.Thread(target=profile_pid, args=(pid, args.seconds, outputs[name]))
                       for name, pid in targets.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        sampler = threading.Thread(target=sample)

        def on_measure(begin: bool) -> None:
            if begin:
                sampler.start()

        # Enough runs to keep the mesh busy for the whole sampling time.
        runs = max(200, args.seconds * 80)
        result = asyncio.run(mesh_phase(mesh.api_address, runs, args.concurrency, 20, on_measure=on_measure))
        sampler.join()
        print(f"load: {result.throughput:.1f} runs/s over {result.wall_s:.1f} s, {args.concurrency} clients, "
              f"{args.workers} workers; sampled {args.seconds} s at 200 Hz")
        for name, raw in outputs.items():
            print(f"\n{name}:")
            print(summarize(raw, args.top))
    if args.keep:
        print(f"\nraw stacks kept in {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
