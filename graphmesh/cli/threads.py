"""`graphmesh threads purge THREAD_ID --reason ...` (RunService.PurgeThread, operators)."""

from __future__ import annotations

import argparse

from graphmesh.cli.render import as_json
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb


def add_parser(subparsers) -> None:
    threads = subparsers.add_parser("threads", help="thread-wide operator actions").add_subparsers(
        dest="threads_command", required=True)
    purge = threads.add_parser("purge", help="remove every trace of a finished thread from every store "
                                             "(deletion requests); one audit record stays")
    purge.add_argument("thread_id")
    purge.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    purge.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    purge.set_defaults(func=purge_thread)


def purge_thread(args) -> int:
    reply = api_client(args.api).runs.PurgeThread(
        pb.PurgeThreadRequest(thread_id=args.thread_id, reason=args.reason), timeout=60)
    if args.json:
        print(as_json(reply))
    else:
        counts = ", ".join(f"{n} {store}" for store, n in sorted(reply.deleted.items()) if n)
        print(f"thread {reply.thread_id} purged ({counts or 'nothing stored'}); audit record {reply.audit_record_id}")
    return 0
