"""`graphmesh approvals list|get|watch|approve|reject|edit|respond` and `graphmesh audit`.

On a mesh with authentication (the default) a decision is recorded as the principal of the
token the CLI sends. On a development mesh (`up --auth none`) the reviewer is named by `--as`
(env GRAPHMESH_PRINCIPAL, else the OS user) in the `gm-principal` metadata key; `--as` with a
token is refused by the CLI (graphmesh/cli/__init__.py) rather than silently ignored.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta, timezone

from google.protobuf import json_format, struct_pb2

from graphmesh.cli.args import default_principal, json_object, whole_number
from graphmesh.cli.render import (
    approval_details,
    approval_event_line,
    approvals_table,
    as_json,
    audit_table,
)
from graphmesh.client import DEFAULT_REVIEW, review_stub
from graphmesh.rpc.principal import PRINCIPAL_KEY
from graphmesh.v1 import review_service_pb2 as pb

STATUSES = [name.removeprefix("APPROVAL_STATUS_").lower() for name in pb.ApprovalStatus.keys()
            if name != "APPROVAL_STATUS_UNSPECIFIED"]
KINDS = {"approve": pb.DECISION_KIND_APPROVE, "reject": pb.DECISION_KIND_REJECT, "edit": pb.DECISION_KIND_EDIT,
         "respond": pb.DECISION_KIND_RESPOND}
# Unary calls are bounded; the watch stream is not.
TIMEOUT = 30.0
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MOMENT_HELP = "ISO 8601 (UTC unless it names a zone) or a duration ago: 30m, 2h, 7d"


def _sequence(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        # after_sequence 0 means "from now" to the service; sequences start at 1.
        raise argparse.ArgumentTypeError("must be at least 1 (without --after the watch starts now)")
    return value


def _moment(text: str) -> datetime:
    """A point in time: ISO 8601 (a date or date and time; UTC, the zone the tables show,
    unless it names one) or a duration like 30m, 2h, 7d meaning that long ago."""
    match = DURATION.fullmatch(text.strip())
    if match:
        try:
            return datetime.now(timezone.utc) - timedelta(seconds=float(match[1]) * UNIT_SECONDS[match[2]])
        except OverflowError:
            raise argparse.ArgumentTypeError(f"too long ago: {text!r}") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 like 2026-12-01T09:30, or a duration ago like 30m, 2h, 7d)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _set_time(message, field: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field).FromDatetime(moment)


def add_parser(subparsers) -> None:
    review_help = (f"review service address (env GRAPHMESH_REVIEW; default: the recorded deployment's, "
                   f"else {DEFAULT_REVIEW})")
    as_help = ("the reviewer's name on a mesh without authentication (env GRAPHMESH_PRINCIPAL, default: the OS "
               "user); with a token, decisions are the token's principal's")
    # Options that also work after the subcommand: `graphmesh approvals get ID --json --review ADDR`.
    # SUPPRESS keeps a subcommand from overwriting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--review", default=argparse.SUPPRESS, help=review_help)
    deciding = argparse.ArgumentParser(add_help=False)
    deciding.add_argument("--as", dest="principal", default=argparse.SUPPRESS, help=as_help)
    deciding.add_argument("--comment", default="", help="a comment recorded with the decision")

    group = subparsers.add_parser("approvals", help="list, watch and decide approval requests")
    group.add_argument("--review", default=None, help=review_help)
    group.add_argument("--as", dest="principal", default=None, help=as_help)
    approvals = group.add_subparsers(dest="approvals_command", required=True)

    ls = approvals.add_parser("list", help="list approvals, newest first", parents=[common])
    ls.add_argument("--status", action="append", default=[], choices=STATUSES,
                    help="only these statuses (repeatable)")
    ls.add_argument("--graph", default="")
    ls.add_argument("--run", default="", help="only this run's approvals")
    ls.add_argument("--thread", default="", help="only approvals of this thread's runs")
    ls.add_argument("--role", default="", help="only approvals that need this role to decide")
    ls.add_argument("--reviewer", default="", help="only approvals decided by this reviewer")
    ls.add_argument("--since", type=_moment, default=None, metavar="TIME",
                    help=f"only approvals created at or after TIME ({MOMENT_HELP})")
    ls.add_argument("--until", type=_moment, default=None, metavar="TIME",
                    help="only approvals created before TIME; `--status pending --until 30m`: waiting over 30 "
                         "minutes")
    ls.add_argument("--limit", type=whole_number(1), default=20)
    ls.add_argument("--page-token", default="")
    ls.set_defaults(func=list_approvals)

    get = approvals.add_parser("get", help="show one approval, its payload and decision", parents=[common])
    get.add_argument("approval_id")
    get.set_defaults(func=get_approval)

    watch = approvals.add_parser("watch", help="follow approval requests and decisions (Ctrl-C stops)",
                                 parents=[common])
    watch.add_argument("--graph", default="")
    watch.add_argument("--pending", action="store_true", help="first list every pending approval")
    watch.add_argument("--after", type=_sequence, default=0, metavar="SEQ",
                       help="resume after this approval-event sequence (default: start now)")
    watch.add_argument("--count", type=whole_number(1), default=None, help="exit after this many events")
    watch.set_defaults(func=watch_approvals)

    for name, text in (("approve", "approve a pending approval"), ("reject", "reject a pending approval")):
        p = approvals.add_parser(name, help=text, parents=[common, deciding])
        p.add_argument("approval_id")
        p.set_defaults(func=decide, kind=name, value=None)

    edit = approvals.add_parser("edit", help="approve with an edited value", parents=[common, deciding])
    edit.add_argument("approval_id")
    edit.add_argument("--value", required=True, help="the edited value as a JSON object (or @file.json)")
    edit.set_defaults(func=decide, kind="edit")

    respond = approvals.add_parser(
        "respond", help="resume the interrupt with a value as given (what Command(resume=...) passes)",
        parents=[common, deciding])
    respond.add_argument("approval_id")
    respond.add_argument("--value", required=True,
                         help='any JSON value interrupt() returns, e.g. \'"yes"\', 42, null, a list (or @file.json)')
    respond.set_defaults(func=decide, kind="respond")

    # Its own options, not `common`: parents share their action objects, so a default set
    # here would leak into every approvals subcommand.
    audit = subparsers.add_parser("audit", help="the append-only audit trail of approvals, oldest first")
    audit.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    audit.add_argument("--review", default=None, help=review_help)
    audit.add_argument("--run", default="", help="only this run's records")
    audit.add_argument("--approval", default="", help="only this approval's records")
    audit.add_argument("--actor", default="", help="only records by this actor (a reviewer, system:expiry, ...)")
    audit.add_argument("--thread", default="", help="only records of this thread's runs, and of its purge")
    audit.add_argument("--since", type=_moment, default=None, metavar="TIME",
                       help=f"only records written at or after TIME ({MOMENT_HELP})")
    audit.add_argument("--until", type=_moment, default=None, metavar="TIME",
                       help="only records written before TIME")
    audit.add_argument("--newest-first", action="store_true",
                       help="newest records first (keep it when passing --page-token)")
    audit.add_argument("--limit", type=whole_number(1), default=100)
    audit.add_argument("--page-token", default="")
    audit.set_defaults(func=list_audit)


def list_approvals(args) -> int:
    statuses = [pb.ApprovalStatus.Value(f"APPROVAL_STATUS_{s.upper()}") for s in args.status]
    request = pb.ListApprovalsRequest(
        statuses=statuses, graph=args.graph, run_id=args.run, page_size=args.limit, page_token=args.page_token,
        thread_id=args.thread, required_role=args.role, reviewer=args.reviewer)
    _set_time(request, "created_after", args.since)
    _set_time(request, "created_before", args.until)
    response = review_stub(args.review).ListApprovals(request, timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
        return 0
    if response.approvals:
        print(approvals_table(response.approvals))
    else:
        print("no approvals")
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


def get_approval(args) -> int:
    approval = review_stub(args.review).GetApproval(
        pb.GetApprovalRequest(approval_id=args.approval_id), timeout=TIMEOUT).approval
    print(as_json(approval) if args.json else _details(approval))
    return 0


def watch_approvals(args) -> int:
    call = review_stub(args.review).WatchApprovals(pb.WatchApprovalsRequest(
        include_pending=args.pending, graph=args.graph, after_sequence=args.after))
    seen = 0
    try:
        for response in call:
            event = response.event
            print(as_json(event) if args.json else approval_event_line(event), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        call.cancel()
    return 0


def json_value(text: str, option: str) -> struct_pb2.Value:
    """Any JSON value given inline or as @file, or a clean exit naming the option."""
    try:
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        return json_format.ParseDict(json.loads(text), struct_pb2.Value())
    except OSError as exc:
        raise SystemExit(f"error: cannot read {option} file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: {option} is not valid JSON (a string needs its quotes: '\"yes\"'): {exc}") from None


def _details(approval) -> str:
    """approval_details, and a RESPOND decision's value."""
    text = approval_details(approval)
    if approval.HasField("decision") and approval.decision.HasField("value"):
        value = json.dumps(json_format.MessageToDict(approval.decision.value), indent=2, sort_keys=True)
        text += "\nvalue\n" + "\n".join("  " + line for line in value.splitlines())
    return text


def decide(args) -> int:
    request = pb.DecideRequest(approval_id=args.approval_id, kind=KINDS[args.kind], comment=args.comment)
    if args.kind == "respond":
        request.value.CopyFrom(json_value(args.value, "--value"))
    elif args.value is not None:
        request.edited_value.CopyFrom(json_object(args.value, "--value"))
    approval = review_stub(args.review).Decide(
        request, timeout=TIMEOUT, metadata=((PRINCIPAL_KEY, args.principal or default_principal()),)).approval
    print(as_json(approval) if args.json else _details(approval))
    return 0


def list_audit(args) -> int:
    request = pb.ListAuditRecordsRequest(
        run_id=args.run, approval_id=args.approval, page_size=args.limit, page_token=args.page_token,
        actor=args.actor, thread_id=args.thread, newest_first=args.newest_first)
    _set_time(request, "time_after", args.since)
    _set_time(request, "time_before", args.until)
    response = review_stub(args.review).ListAuditRecords(request, timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
        return 0
    if response.records:
        print(audit_table(response.records))
    else:
        print("no audit records")
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}" + (" --newest-first" if args.newest_first else ""))
    return 0
