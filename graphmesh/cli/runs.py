"""`graphmesh runs create|invoke|get|list|stream|cancel|retry|resume`."""

from __future__ import annotations

import argparse
import json
import sys
import time

import grpc

from graphmesh.cli.args import json_object, principal_metadata, whole_number
from graphmesh.cli.render import (
    as_json,
    event_line,
    json_block,
    plain_dict,
    previous_errors_lines,
    run_details,
    run_line,
    status_name,
)
from graphmesh.client import api_client
from graphmesh.messages import STRATEGY_VALUES
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb

STRATEGIES = STRATEGY_VALUES
TERMINAL = {run_pb2.RUN_STATUS_COMPLETED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}


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
    create.add_argument("--webhook", default="", metavar="URL",
                        help="POST the run, signed, to this URL when it ends (docs/webhooks.md)")
    create.add_argument("--webhook-on-waiting", action="store_true",
                        help="also POST when the run waits for an approval")
    create.add_argument("--after", type=whole_number(0), default=0, metavar="SECONDS",
                        help="queue it now, start it no sooner than this many seconds from now")
    create.set_defaults(func=create_run)

    invoke = runs.add_parser("invoke", help="run a sync-eligible graph, wait for it and print its output "
                                            "(exit status 1 unless it completed)", parents=[common])
    invoke.add_argument("graph")
    invoke.add_argument("--input", default="{}", help="input as a JSON object (or @file.json)")
    invoke.add_argument("--thread", default="", help="thread id (default: a new thread)")
    invoke.add_argument("--idempotency-key", default="")
    invoke.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    invoke.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                        help="the call's deadline; a run that outlasts it is stopped and recorded FAILED "
                             "(default 60)")
    invoke.set_defaults(func=invoke_run)

    get = runs.add_parser("get", help="show one run, and its output once it completed", parents=[common])
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
    cancel.add_argument("--as", dest="principal", default=None,
                        help="who cancels, on a mesh without authentication (default: your user name); "
                             "with a token, the token's principal")
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

    delete = runs.add_parser("delete", help="remove a finished run: its record, events, approvals and spans "
                                            "(the thread and its checkpoints stay)", parents=[common])
    delete.add_argument("run_id")
    delete.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    delete.set_defaults(func=delete_run)

    stream = runs.add_parser("stream", help="follow a run's events until it ends", parents=[common])
    stream.add_argument("run_id")
    stream.add_argument("--after", type=int, default=0, help="resume after this event sequence")
    stream.set_defaults(func=stream_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _metadata(items: list[str]) -> dict[str, str]:
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --metadata {item!r} is not KEY=VALUE")
    return dict(item.split("=", 1) for item in items)


def _webhook(args) -> run_pb2.Webhook | None:
    if args.webhook_on_waiting and not args.webhook:
        raise SystemExit("error: --webhook-on-waiting needs --webhook URL")
    return run_pb2.Webhook(url=args.webhook, on_waiting=args.webhook_on_waiting) if args.webhook else None


def create_run(args) -> int:
    client = api_client(args.api)
    metadata = _metadata(args.metadata)
    run = client.runs.CreateRun(pb.CreateRunRequest(
        graph=args.graph, graph_version=args.version, thread_id=args.thread, input=json_object(args.input, "--input"),
        metadata=metadata, idempotency_key=args.idempotency_key,
        multitask_strategy=STRATEGIES[args.multitask], webhook=_webhook(args),
        options=run_pb2.RunOptions(after_seconds=args.after) if args.after else None)).run
    print(as_json(run) if args.json else run_details(run))
    if args.stream:
        return follow(client, run.run_id, 0, as_json_lines=args.json)
    return 0


def run_output(client, run) -> tuple[dict | None, str]:
    """A COMPLETED run's output: the thread's state values, when the thread's latest
    checkpoint was written by this run (its metadata's gm_run_id); else (None, why not)."""
    if run.status != run_pb2.RUN_STATUS_COMPLETED:
        return None, ""
    try:
        state = client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=run.thread_id), timeout=30)
    except grpc.RpcError as err:
        return None, f"output not available: {err.code().name}: {err.details()}"
    writer = plain_dict(state.checkpoint_metadata).get("gm_run_id", "")
    if writer == run.run_id:
        return plain_dict(state.values), ""
    by = f"run {writer}" if writer else "another writer"
    return None, (f"the thread has moved on: its latest checkpoint was written by {by}; "
                  f"`graphmesh threads state {run.thread_id}` shows it")


def get_run(args) -> int:
    client = api_client(args.api)
    run = client.runs.GetRun(pb.GetRunRequest(run_id=args.run_id)).run
    output, note = run_output(client, run)
    if args.json:
        data = json.loads(as_json(run))
        if run.status == run_pb2.RUN_STATUS_COMPLETED:
            data["output"] = output
            if note:
                data["output_note"] = note
        print(json.dumps(data, sort_keys=True))
        return 0
    print(run_details(run))
    if output is not None:
        print("output")
        print(json_block(output))
    elif note:
        print(f"output     {note}")
    return 0


def invoke_run(args) -> int:
    """InvokeRun, bounded by --timeout; prints the run and its output."""
    reply = api_client(args.api).runs.InvokeRun(pb.InvokeRunRequest(
        graph=args.graph, thread_id=args.thread, input=json_object(args.input, "--input"),
        metadata=_metadata(args.metadata), idempotency_key=args.idempotency_key), timeout=args.timeout)
    run = reply.run
    if args.json:
        print(as_json(reply))
    else:
        print(run_details(run))
        if run.status == run_pb2.RUN_STATUS_COMPLETED:
            print("output")
            print(json_block(plain_dict(reply.output)))
    return 0 if run.status == run_pb2.RUN_STATUS_COMPLETED else 1


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


def delete_run(args) -> int:
    reply = api_client(args.api).runs.DeleteRun(pb.DeleteRunRequest(run_id=args.run_id, reason=args.reason),
                                                timeout=60)
    if args.json:
        print(as_json(reply))
    else:
        counts = ", ".join(f"{n} {store}" for store, n in sorted(reply.deleted.items()) if n)
        print(f"run {reply.run_id} of thread {reply.thread_id} deleted ({counts}); "
              f"audit record {reply.audit_record_id}")
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


def follow(client, run_id: str, after: int, *, as_json_lines: bool, on_event=None) -> int:
    """Prints a run's events until its latest attempt ends; exit status 0 only when that
    attempt completed.

    StreamRun ends at a terminal status. The run may have moved on since (RetryRun starts a
    new attempt under the same run id, ResumeRun continues a paused one, and the events of
    all attempts share one sequence), so at the end the run record is asked: while it is not
    terminal, or the stream has more after the last event seen, the stream is followed on
    after that event. It ends when the run is terminal and nothing more comes."""
    last = after
    notices = not as_json_lines
    while True:
        ended = None  # the terminal status this stream ended at, if any
        count = 0
        for response in client.runs.StreamRun(pb.StreamRunRequest(run_id=run_id, after_sequence=last)):
            event = response.event
            print(as_json(event) if as_json_lines else event_line(event), flush=True)
            if on_event is not None:
                on_event(event)
            last = max(last, event.sequence)
            count += 1
            if event.WhichOneof("kind") == "status_changed" and event.status_changed.status in TERMINAL:
                ended = event.status_changed.status
        run = client.runs.GetRun(pb.GetRunRequest(run_id=run_id)).run
        if run.status not in TERMINAL:
            if ended is not None and notices:
                print(f"run {run_id} is {status_name(run.status)} again (attempt {run.attempt}): following it",
                      file=sys.stderr, flush=True)
            if count == 0:
                time.sleep(0.5)  # the stream gave up without news (not expected): do not spin
            continue
        if count:
            continue  # terminal: one more look for events beyond the last one seen (answers at once)
        break
    if notices:
        attempt = f" (attempt {run.attempt})" if run.attempt > 1 else ""
        print(f"run {run_id} ended {status_name(run.status)}{attempt}", file=sys.stderr)
    return 0 if run.status == run_pb2.RUN_STATUS_COMPLETED else 1
