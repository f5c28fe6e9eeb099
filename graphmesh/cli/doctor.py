"""`graphmesh doctor`: checks a whole deployment and says plainly what is wrong.

Each check prints one line, OK or PROBLEM with what to do; the exit status is 1 when
anything is wrong. It asks the services over gRPC (health, ListGraphs, GetGraph,
ListWorkers, each worker's health) and, given their URLs, Postgres and NATS directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict, dataclass

import grpc

from graphmesh.client import DEFAULT_REVIEW, api_client, channel
from graphmesh.health import serving_status
from graphmesh.v1 import graph_service_pb2 as gpb

TIMEOUT = 5.0


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check a deployment: services, workers, graph versions, Postgres, NATS")
    p.add_argument("--review", default=None,
                   help=f"review service address (env GRAPHMESH_REVIEW; default: the recorded deployment's, "
                        f"else {DEFAULT_REVIEW})")
    p.add_argument("--database-url", default=os.environ.get("GRAPHMESH_DATABASE_URL"),
                   help="also check Postgres directly (env GRAPHMESH_DATABASE_URL)")
    p.add_argument("--nats-url", default=os.environ.get("GRAPHMESH_NATS_URL"),
                   help="also check NATS directly (env GRAPHMESH_NATS_URL)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(func=run)


def _health(address: str) -> str:
    with channel(address) as ch:
        return serving_status(ch, TIMEOUT)


def _service(name: str, address: str) -> Finding:
    status = _health(address)
    if status == "SERVING":
        return Finding(name, True, f"{address} SERVING")
    hint = ("it cannot reach Postgres or NATS: see the checks below and its log" if status == "NOT_SERVING"
            else "is it running, and is the address right?")
    return Finding(name, False, f"{address} {status}: {hint}")


def _mesh(api: str) -> list[Finding]:
    findings = []
    client = api_client(api)
    try:
        workers = client.graphs.ListWorkers(gpb.ListWorkersRequest(), timeout=TIMEOUT).workers
        graphs = client.graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=TIMEOUT).graphs
    except grpc.RpcError as err:
        return [Finding("graphs", False, f"the api could not list workers or graphs: {err.code().name}: {err.details()}")]
    live = [w for w in workers if not w.draining]
    findings.append(Finding("workers", bool(live), f"{len(live)} taking runs, {len(workers) - len(live)} draining"
                            if live else "no worker is taking runs: queued runs will wait; start workers"))
    for w in workers:
        status = _health(w.address)
        findings.append(Finding(f"worker {w.worker_id}", status == "SERVING",
                                f"{w.address} {status}, {w.active_runs}/{w.capacity} runs"
                                + (", draining" if w.draining else "")))
    for graph in graphs:
        detail = client.graphs.GetGraph(gpb.GetGraphRequest(graph=graph.name), timeout=TIMEOUT).graph
        for v in detail.versions:
            label = f"{graph.name}@{v.versions.graph_version}"
            if v.workers:
                findings.append(Finding(label, True, f"served by {len(v.workers)} worker(s), weight {v.weight}%"))
            elif v.weight or v.runs_queued:
                findings.append(Finding(label, False, (
                    f"no live worker serves it (weight {v.weight}%, {v.runs_queued} run(s) queued): start a worker "
                    "that loads this version, or roll it back (graphmesh graphs rollback)")))
    client.close()
    return findings


async def _postgres(url: str) -> Finding:
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=TIMEOUT) as conn:
            (version,) = await (await conn.execute("SELECT coalesce(max(version), 0) FROM gm_schema_migrations")).fetchone()
        from graphmesh.store.schema import MIGRATIONS

        if version < len(MIGRATIONS) - 1:
            return Finding("postgres", False, f"schema version {version}, code expects {len(MIGRATIONS) - 1}: "
                                              "run `graphmesh migrate`")
        return Finding("postgres", True, f"reachable, schema version {version}")
    except Exception as exc:
        return Finding("postgres", False, f"cannot query it: {type(exc).__name__}: {str(exc).strip()[:200]}")


async def _nats(url: str) -> Finding:
    import nats

    from graphmesh.bus.streams import EVENTS_STREAM, RUNS_STREAM, WORKER_CONSUMER

    try:
        nc = await nats.connect(url, connect_timeout=TIMEOUT, max_reconnect_attempts=0, allow_reconnect=False)
    except Exception as exc:
        return Finding("nats", False, f"cannot connect: {type(exc).__name__}: {exc}")
    try:
        js = nc.jetstream()
        for stream in (RUNS_STREAM, EVENTS_STREAM):
            await js.stream_info(stream)
        info = await js.consumer_info(RUNS_STREAM, WORKER_CONSUMER)
        return Finding("nats", True, f"JetStream streams present; {info.num_pending} job(s) undelivered, "
                                     f"{info.num_ack_pending} in progress")
    except Exception as exc:
        return Finding("nats", False, f"JetStream is not ready ({type(exc).__name__}: {exc}): run `graphmesh migrate`")
    finally:
        await nc.close()


def run(args) -> int:
    findings = [_service("api", args.api), _service("review", args.review)]
    if findings[0].ok:
        findings += _mesh(args.api)
    if args.database_url:
        findings.append(asyncio.run(_postgres(args.database_url)))
    if args.nats_url:
        findings.append(asyncio.run(_nats(args.nats_url)))
    problems = [f for f in findings if not f.ok]
    if getattr(args, "json", False):
        print(json.dumps({"ok": not problems, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            print(f"{'OK     ' if f.ok else 'PROBLEM'}  {f.check.ljust(width)}  {f.detail}")
        print("all checks passed" if not problems else f"{len(problems)} problem(s) found")
    return 1 if problems else 0
