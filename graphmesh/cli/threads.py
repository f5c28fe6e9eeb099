"""`graphmesh threads state THREAD_ID` (RunService.GetThreadState) and
`graphmesh threads purge THREAD_ID --reason ...` (RunService.PurgeThread, operators)."""

from __future__ import annotations

import argparse

from graphmesh.cli.render import as_json, thread_state_details
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    threads = subparsers.add_parser("threads", help="a thread's state; thread-wide operator actions").add_subparsers(
        dest="threads_command", required=True)
    state = threads.add_parser("state", help="a thread's latest state: values, next nodes, checkpoint, the graph "
                                             "version and run that wrote it, the run holding it", parents=[common])
    state.add_argument("thread_id")
    state.set_defaults(func=thread_state)
    purge = threads.add_parser("purge", help="remove every trace of a finished thread from every store "
                                             "(deletion requests); one audit record stays", parents=[common])
    purge.add_argument("thread_id")
    purge.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    purge.set_defaults(func=purge_thread)


def thread_state(args) -> int:
    state = api_client(args.api).runs.GetThreadState(pb.GetThreadStateRequest(thread_id=args.thread_id), timeout=30)
    print(as_json(state) if args.json else thread_state_details(state))
    return 0


def purge_thread(args) -> int:
    reply = api_client(args.api).runs.PurgeThread(
        pb.PurgeThreadRequest(thread_id=args.thread_id, reason=args.reason), timeout=60)
    if args.json:
        print(as_json(reply))
    else:
        counts = ", ".join(f"{n} {store}" for store, n in sorted(reply.deleted.items()) if n)
        print(f"thread {reply.thread_id} purged ({counts or 'nothing stored'}); audit record {reply.audit_record_id}")
    return 0
