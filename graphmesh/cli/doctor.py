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
from pathlib import Path

import grpc

from graphmesh.client import DEFAULT_REVIEW, api_client, channel, load_cli_config, resolve_target, same_address
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
    p.add_argument("--expect-workers", type=int, default=None, metavar="N",
                   help="how many workers should be taking runs (default: as many as `graphmesh up` started "
                        "for the recorded deployment, else no expectation)")
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


@dataclass
class Expected:
    """The workers a deployment should have: a count, and their ids when `up` recorded them."""

    count: int
    names: list[str]
    source: str


def _expected(args) -> Expected | None:
    """--expect-workers, else the record `graphmesh up` (graphmesh.mesh) keeps in the data
    directory of the recorded deployment at this api address."""
    if getattr(args, "expect_workers", None) is not None:
        return Expected(args.expect_workers, [], "--expect-workers")
    try:
        deployment = resolve_target(load_cli_config(), api_flag=args.api).deployment
    except Exception:  # no usable CLI config: no expectation
        return None
    if deployment is None or deployment.key.startswith("legacy:"):
        return None
    path = Path(deployment.key) / "mesh.json"
    try:
        record = json.loads(path.read_text())
        names = [str(n) for n in record["workers"]]
        recorded_api = str(record.get("api") or deployment.api)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same_address(recorded_api, args.api):  # a record of another mesh that used this data dir
        return None
    return Expected(len(names), names, f"deployment {deployment.name} ({path})")


def _workers_finding(workers, expected: Expected | None) -> Finding:
    live = [w for w in workers if not w.draining]
    draining = len(workers) - len(live)
    if not live:
        want = f" ({expected.count} expected, from {expected.source})" if expected else ""
        return Finding("workers", False, f"no worker is taking runs{want}: queued runs will wait; start workers")
    if expected is None:
        return Finding("workers", True, f"{len(live)} taking runs, {draining} draining")
    present = {w.worker_id for w in workers}
    missing = [n for n in expected.names if n not in present]
    if len(workers) < expected.count:
        named = f": {', '.join(missing)} not seen" if missing else ""
        return Finding("workers", False, (
            f"{len(workers)} of {expected.count} expected workers present (from {expected.source}){named}; "
            f"{len(live)} taking runs, {draining} draining: is it running? see its log "
            "(graphmesh up restarts a worker that dies)"))
    return Finding("workers", True, f"{len(live)} taking runs, {draining} draining "
                                    f"({expected.count} expected, from {expected.source})")


AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _rpc_problem(what: str, err: grpc.RpcError) -> Finding:
    if err.code() == grpc.StatusCode.UNAUTHENTICATED:
        hint = ("the api refused the CLI's token: pass --token TOKEN|@FILE or set GRAPHMESH_TOKEN "
                "(`graphmesh up` keeps an admin token in <data-dir>/admin-token)")
    elif err.code() == grpc.StatusCode.PERMISSION_DENIED:
        hint = "the token's principal may not do this: doctor needs a token with the operator or admin role"
    else:
        hint = "see the api's log"
    return Finding(what, False, f"{err.code().name}: {err.details()}: {hint}")


def _mesh(api: str, expected: Expected | None = None) -> list[Finding]:
    findings = []
    client = api_client(api)
    try:
        return _mesh_checks(client, expected, findings)
    except grpc.RpcError as err:  # e.g. a token that may list graphs but not read one
        return findings + [_rpc_problem("graphs", err)]
    finally:
        client.close()


def _mesh_checks(client, expected: Expected | None, findings: list[Finding]) -> list[Finding]:
    try:
        workers = client.graphs.ListWorkers(gpb.ListWorkersRequest(), timeout=TIMEOUT).workers
        graphs = client.graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=TIMEOUT).graphs
    except grpc.RpcError as err:
        if err.code() in AUTH_CODES:
            return [_rpc_problem("api access", err)]
        return [Finding("graphs", False, f"the api could not list workers or graphs: {err.code().name}: {err.details()}")]
    findings.append(_workers_finding(workers, expected))
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
                continue
            waiting = v.runs_queued + v.runs_running + v.runs_waiting + v.runs_paused
            if v.undeclared and waiting:
                findings.append(Finding(label, False, (
                    f"no longer in the manifest, yet {waiting} run(s) of it are in flight ({v.runs_queued} queued, "
                    f"{v.runs_running} running, {v.runs_waiting} waiting, {v.runs_paused} paused) and no worker loads "
                    "it: keep a worker with the old manifest until they finish, or declare a migration")))
            elif v.weight or waiting:
                findings.append(Finding(label, False, (
                    f"no live worker serves it (weight {v.weight}%, {v.runs_queued} run(s) queued): start a worker "
                    "that loads this version, or roll it back (graphmesh graphs rollback)")))
    return findings


async def _postgres(url: str) -> Finding:
    import psycopg

    from graphmesh.store.schema import MIGRATIONS, schema_version

    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=TIMEOUT) as conn:
            version = await schema_version(conn)
        if version < len(MIGRATIONS) - 1:
            return Finding("postgres", False, f"schema version {version}, code expects {len(MIGRATIONS) - 1}: "
                                              "run `graphmesh migrate`")
        return Finding("postgres", True, f"reachable, schema version {version}")
    except Exception as exc:
        return Finding("postgres", False, f"cannot query it: {type(exc).__name__}: {str(exc).strip()[:200]}")


async def _nats(url: str) -> Finding:
    import nats

    from graphmesh.bus.connection import server_urls
    from graphmesh.bus.streams import EVENTS_STREAM, RUNS_STREAM, WORKER_CONSUMER

    async def quiet(_exc) -> None:
        pass  # nats-py's default callback logs a traceback per error; the failure is reported below

    try:
        nc = await nats.connect(servers=server_urls(url), connect_timeout=TIMEOUT, max_reconnect_attempts=0, allow_reconnect=False,
                                error_cb=quiet)
    except Exception as exc:
        if "authorization violation" in str(exc).lower():
            return Finding("nats", False, (
                "NATS refused the credentials in the URL (Authorization Violation): give the token in "
                "--nats-url / GRAPHMESH_NATS_URL as nats://TOKEN@host:port (an embedded NATS of "
                "`graphmesh up` keeps its token in <data-dir>/nats-token)"))
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
        findings += _mesh(args.api, _expected(args))
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
