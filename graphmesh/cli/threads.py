"""`graphmesh threads list|get|create` (ThreadService), `graphmesh threads state THREAD_ID`
(RunService.GetThreadState) and `graphmesh threads purge THREAD_ID --reason ...`
(RunService.PurgeThread, operators)."""

from __future__ import annotations

import argparse

from graphmesh.cli.args import json_object, principal_metadata
from graphmesh.cli.render import as_json, json_block, plain_dict, thread_state_details, when_utc
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import thread_pb2, thread_service_pb2_grpc
from graphmesh.v1 import thread_service_pb2 as tpb

STATUSES = {"idle": thread_pb2.THREAD_STATUS_IDLE, "busy": thread_pb2.THREAD_STATUS_BUSY,
            "interrupted": thread_pb2.THREAD_STATUS_INTERRUPTED, "error": thread_pb2.THREAD_STATUS_ERROR}
SORTS = {"created_at": tpb.THREAD_SORT_BY_CREATED_AT, "updated_at": tpb.THREAD_SORT_BY_UPDATED_AT,
         "thread_id": tpb.THREAD_SORT_BY_THREAD_ID, "status": tpb.THREAD_SORT_BY_STATUS}
IF_EXISTS = {"raise": tpb.IF_EXISTS_RAISE, "do_nothing": tpb.IF_EXISTS_DO_NOTHING}
TIMEOUT = 30


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    threads = subparsers.add_parser("threads", help="threads: list, show, create; state; purge").add_subparsers(
        dest="threads_command", required=True)

    ls = threads.add_parser("list", help="threads newest first (or as sorted), with their status",
                            parents=[common])
    ls.add_argument("--graph", default="")
    ls.add_argument("--status", choices=sorted(STATUSES), default=None)
    ls.add_argument("--metadata", default=None, metavar="JSON", help="threads whose metadata contains this object")
    ls.add_argument("--values", default=None, metavar="JSON",
                    help="threads whose latest state contains this object (reads each candidate's state)")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--sort", choices=sorted(SORTS), default="created_at")
    ls.add_argument("--asc", action="store_true", help="ascending (default: newest / highest first)")
    ls.set_defaults(func=list_threads)

    get = threads.add_parser("get", help="a thread: status, graph, owner, metadata, what it waits on",
                             parents=[common])
    get.add_argument("thread_id")
    get.add_argument("--values", action="store_true", help="also its latest state's values")
    get.set_defaults(func=get_thread)

    create = threads.add_parser("create", help="a thread with no run yet", parents=[common])
    create.add_argument("thread_id", nargs="?", default="", help="default: a new UUID")
    create.add_argument("--graph", default="", help="the graph the thread is for (its first run may set it)")
    create.add_argument("--metadata", default=None, metavar="JSON", help="a JSON object (or @file.json)")
    create.add_argument("--if-exists", choices=sorted(IF_EXISTS), default="raise",
                        help="when the id is taken: fail (raise) or show the existing thread (do_nothing)")
    create.add_argument("--as", dest="principal", default=None,
                        help="its owner, on a mesh without authentication (default: your user name); "
                             "with a token, the token's principal")
    create.set_defaults(func=create_thread)

    state = threads.add_parser("state", help="a thread's latest state: values, next nodes, checkpoint, the graph "
                                             "version and run that wrote it, the run holding it", parents=[common])
    state.add_argument("thread_id")
    state.set_defaults(func=thread_state)
    purge = threads.add_parser("purge", help="remove every trace of a finished thread from every store "
                                             "(deletion requests); one audit record stays", parents=[common])
    purge.add_argument("thread_id")
    purge.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    purge.set_defaults(func=purge_thread)


def _stub(args) -> thread_service_pb2_grpc.ThreadServiceStub:
    return thread_service_pb2_grpc.ThreadServiceStub(api_client(args.api).channel)


def list_threads(args) -> int:
    request = tpb.ListThreadsRequest(graph=args.graph, status=STATUSES[args.status] if args.status else 0,
                                     limit=args.limit, offset=args.offset, sort_by=SORTS[args.sort],
                                     ascending=args.asc)
    if args.metadata is not None:
        request.metadata.CopyFrom(json_object(args.metadata, "--metadata"))
    if args.values is not None:
        request.values.CopyFrom(json_object(args.values, "--values"))
    response = _stub(args).ListThreads(request, timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
        return 0
    for thread in response.threads:
        print(thread_line(thread))
    if response.has_more:
        print(f"more: --offset {args.offset + args.limit}")
    return 0


def get_thread(args) -> int:
    thread = _stub(args).GetThread(tpb.GetThreadRequest(thread_id=args.thread_id, include_values=args.values),
                                   timeout=TIMEOUT).thread
    print(as_json(thread) if args.json else thread_details(thread))
    return 0


def create_thread(args) -> int:
    request = tpb.CreateThreadRequest(thread_id=args.thread_id, graph=args.graph, if_exists=IF_EXISTS[args.if_exists])
    if args.metadata is not None:
        request.metadata.CopyFrom(json_object(args.metadata, "--metadata"))
    reply = _stub(args).CreateThread(request, timeout=TIMEOUT, metadata=principal_metadata(args.principal))
    if args.json:
        print(as_json(reply))
    else:
        print(("created\n" if reply.created else "exists already\n") + thread_details(reply.thread))
    return 0


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


# -- rendering -----------------------------------------------------------------------------

def _status(value: int) -> str:
    return thread_pb2.ThreadStatus.Name(value).removeprefix("THREAD_STATUS_").lower()


def thread_line(t: thread_pb2.Thread) -> str:
    waits = f"  waits on {len(t.interrupts)}" if t.interrupts else ""
    return f"{t.thread_id}  {_status(t.status):<11} {t.graph or '-'}  owner {t.owner or '-'}  {when_utc(t.created_at)}{waits}"


def thread_details(t: thread_pb2.Thread) -> str:
    lines = [
        f"thread     {t.thread_id}",
        f"status     {_status(t.status)}",
        f"graph      {t.graph or '- (none yet)'}",
        f"owner      {t.owner or '-'}",
        f"created    {when_utc(t.created_at)}",
        f"updated    {when_utc(t.updated_at)}",
        f"latest run {t.latest_run_id or '-'}",
        f"active run {t.active_run_id or '-'}",
    ]
    for i in t.interrupts:
        lines.append(f"waits on   approval {i.approval_id or '-'} at {i.node or '?'} (run {i.run_id or '-'}, "
                     f"interrupt {i.interrupt_id})")
    if t.metadata.fields:
        lines += ["metadata", json_block(plain_dict(t.metadata))]
    if t.HasField("values"):
        lines += ["values", json_block(plain_dict(t.values))]
    return "\n".join(lines)
