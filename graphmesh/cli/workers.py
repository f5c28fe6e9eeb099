"""`graphmesh workers list|drain`.

The api lists the workers that announced themselves recently (GraphService.ListWorkers);
`drain` looks up a worker's address there and calls that worker's WorkerService.Drain.
"""

from __future__ import annotations

import argparse
import sys

from graphmesh.cli.args import whole_number
from graphmesh.cli.render import as_json, worker_status_details, workers_table
from graphmesh.client import api_client, worker_stub
from graphmesh.v1 import graph_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb

TIMEOUT = 30.0


def add_parser(subparsers) -> None:
    # --json is accepted after the subcommand too; SUPPRESS keeps it from overwriting `graphmesh --json`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    workers = subparsers.add_parser("workers", help="list and drain workers").add_subparsers(
        dest="workers_command", required=True)

    ls = workers.add_parser("list", help="workers seen recently: load, draining, graph versions", parents=[common])
    ls.set_defaults(func=list_workers)

    drain = workers.add_parser("drain", help="stop a worker taking runs; its active runs finish or move elsewhere",
                               parents=[common])
    drain.add_argument("worker_id")
    drain.add_argument("--grace", type=whole_number(0), default=0, metavar="SECONDS",
                       help="seconds to let active runs finish before handing them back (default: the worker's)")
    drain.set_defaults(func=drain_worker)


def _workers(api: str):
    return api_client(api).graphs.ListWorkers(pb.ListWorkersRequest(), timeout=TIMEOUT).workers


def list_workers(args) -> int:
    workers = _workers(args.api)
    if args.json:
        print(as_json(pb.ListWorkersResponse(workers=workers)))
    elif workers:
        print(workers_table(workers))
    else:
        print("no workers")
    return 0


def drain_worker(args) -> int:
    workers = _workers(args.api)
    found = [w for w in workers if w.worker_id == args.worker_id]
    if not found:
        known = ", ".join(sorted(w.worker_id for w in workers)) or "none"
        print(f"error: NOT_FOUND (WORKER_NOT_FOUND): no worker '{args.worker_id}' announced itself recently "
              f"(workers: {known})", file=sys.stderr)
        return 1
    status = worker_stub(found[0].address).Drain(wpb.DrainRequest(grace_seconds=args.grace), timeout=TIMEOUT).status
    print(as_json(status) if args.json else worker_status_details(status))
    return 0
