"""`graphmesh runs create|get|list|stream|cancel|retry|resume`."""

from __future__ import annotations

import argparse
import sys

from graphmesh.cli.args import json_object, principal_metadata
from graphmesh.cli.render import as_json, event_line, previous_errors_lines, run_details, run_line, status_name
from graphmesh.client import api_client
from graphmesh.rpc.convert import STRATEGY_VALUES
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb

STRATEGIES = STRATEGY_VALUES


def add_parser(subparsers) -> None:
    # --json is accepted after the subcommand too: `graphmesh runs get ID --json`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    runs = subparsers.add_parser("runs", help="create, inspect and follow runs").add_subparsers(
        dest="runs_command", required=True)

    create = runs.add_parser("create", help="queue a run", parents=[common])
    create.add_argument("graph")
    create.add_argument("--input", default="{}", help="input as a JSON object (or @file.json)")
    create.add_argument("--thread", default="", help="thread id (default: a new thread)")
    create.add_argument("--version", default="", help="pin a graph version")
    create.add_argument("--idempotency-key", default="")
    create.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--multitask", choices=sorted(STRATEGIES), default="reject")
    create.add_argument("--stream", action="store_true", help="follow the run's events until it ends")
    create.set_defaults(func=create_run)

    get = runs.add_parser("get", help="show one run", parents=[common])
    get.add_argument("run_id")
    get.set_defaults(func=get_run)

    ls = runs.add_parser("list", help="list runs, newest first", parents=[common])
    ls.add_argument("--status", action="append", default=[], choices=[s.removeprefix("RUN_STATUS_").lower()
                    for s in run_pb2.RunStatus.keys() if s != "RUN_STATUS_UNSPECIFIED"])
    ls.add_argument("--graph", default="")
    ls.add_argument("--thread", default="")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--page-token", default="")
    ls.set_defaults(func=list_runs)

    cancel = runs.add_parser("cancel", help="cancel a run (a running one stops in its current node)", parents=[common])
    cancel.add_argument("run_id")
    cancel.add_argument("--reason", default="")
    cancel.add_argument("--as", dest="principal", default=None, help="who cancels (default: your user name)")
    cancel.add_argument("--rollback", action="store_true",
                        help="also restore the thread to its state before the run (default: keep what it wrote)")
    cancel.set_defaults(func=cancel_run)

    retry = runs.add_parser("retry", help="start a new attempt of a FAILED or CANCELLED run from its last checkpoint",
                            parents=[common])
    retry.add_argument("run_id")
    retry.set_defaults(func=retry_run)

    resume = runs.add_parser("resume", help="continue a PAUSED run (enable its disabled node first)",
                             parents=[common])
    resume.add_argument("run_id")
    resume.set_defaults(func=resume_run)

    stream = runs.add_parser("stream", help="follow a run's events until it ends", parents=[common])
    stream.add_argument("run_id")
    stream.add_argument("--after", type=int, default=0, help="resume after this event sequence")
    stream.set_defaults(func=stream_run)


def create_run(args) -> int:
    client = api_client(args.api)
    metadata = dict(item.split("=", 1) for item in args.metadata)
    run = client.runs.CreateRun(pb.CreateRunRequest(
        graph=args.graph, graph_version=args.version, thread_id=args.thread, input=json_object(args.input, "--input"),
        metadata=metadata, idempotency_key=args.idempotency_key,
        multitask_strategy=STRATEGIES[args.multitask])).run
    print(as_json(run) if args.json else run_details(run))
    if args.stream:
        return follow(client, run.run_id, 0, as_json_lines=args.json)
    return 0


def get_run(args) -> int:
    run = api_client(args.api).runs.GetRun(pb.GetRunRequest(run_id=args.run_id)).run
    print(as_json(run) if args.json else run_details(run))
    return 0


def list_runs(args) -> int:
    statuses = [run_pb2.RunStatus.Value(f"RUN_STATUS_{s.upper()}") for s in args.status]
    response = api_client(args.api).runs.ListRuns(pb.ListRunsRequest(
        statuses=statuses, graph=args.graph, thread_id=args.thread, page_size=args.limit,
        page_token=args.page_token))
    if args.json:
        print(as_json(response))
        return 0
    for run in response.runs:
        print(run_line(run))
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


def cancel_run(args) -> int:
    run = api_client(args.api).runs.CancelRun(
        pb.CancelRunRequest(run_id=args.run_id, reason=args.reason,
                            action=pb.CANCEL_ACTION_ROLLBACK if args.rollback else pb.CANCEL_ACTION_INTERRUPT),
        metadata=principal_metadata(args.principal)).run
    print(as_json(run) if args.json else run_details(run))
    return 0


def _requeued(run) -> str:
    lines = [run_details(run)]
    earlier = previous_errors_lines(run)
    if earlier:
        lines.append("earlier errors")
        lines.extend("  " + line for line in earlier)
    return "\n".join(lines)


def retry_run(args) -> int:
    run = api_client(args.api).runs.RetryRun(pb.RetryRunRequest(run_id=args.run_id), timeout=30).run
    print(as_json(run) if args.json else _requeued(run))
    return 0


def resume_run(args) -> int:
    run = api_client(args.api).runs.ResumeRun(pb.ResumeRunRequest(run_id=args.run_id), timeout=30).run
    print(as_json(run) if args.json else _requeued(run))
    return 0


def stream_run(args) -> int:
    return follow(api_client(args.api), args.run_id, args.after, as_json_lines=args.json)


def follow(client, run_id: str, after: int, *, as_json_lines: bool) -> int:
    """Prints events until the run ends; exit status 0 only when it completed."""
    final = None
    for response in client.runs.StreamRun(pb.StreamRunRequest(run_id=run_id, after_sequence=after)):
        event = response.event
        print(as_json(event) if as_json_lines else event_line(event), flush=True)
        if event.WhichOneof("kind") == "status_changed":
            final = event.status_changed.status
    if final is None:  # nothing after --after: the run's record says how it ended
        final = client.runs.GetRun(pb.GetRunRequest(run_id=run_id)).run.status
    if not as_json_lines:
        print(f"run {run_id} ended {status_name(final)}", file=sys.stderr)
    return 0 if final == run_pb2.RUN_STATUS_COMPLETED else 1
