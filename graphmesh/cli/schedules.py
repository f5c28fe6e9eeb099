"""`graphmesh schedules create|list|get|update|delete|pause|resume|run-now|fires`."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from google.protobuf import field_mask_pb2, json_format, timestamp_pb2

from graphmesh.cli.args import json_object
from graphmesh.cli.render import as_json, run_details, when_utc
from graphmesh.client import api_client
from graphmesh.messages import STRATEGY_VALUES
from graphmesh.v1 import run_pb2
from graphmesh.v1 import schedule_service_pb2 as pb

STATES = {"active": pb.SCHEDULE_STATE_ACTIVE, "paused": pb.SCHEDULE_STATE_PAUSED, "ended": pb.SCHEDULE_STATE_ENDED}
OUTCOMES = {"fired": pb.FIRE_OUTCOME_FIRED, "missed": pb.FIRE_OUTCOME_MISSED, "failed": pb.FIRE_OUTCOME_FAILED}
MISSED = {"skip": pb.MISSED_POLICY_SKIP, "catch_up": pb.MISSED_POLICY_CATCH_UP}
ON_COMPLETED = {"keep": pb.ON_RUN_COMPLETED_KEEP, "delete": pb.ON_RUN_COMPLETED_DELETE}


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    sched = subparsers.add_parser("schedules", help="run graphs on a cron schedule").add_subparsers(
        dest="schedules_command", required=True)

    create = sched.add_parser("create", help="schedule runs of a graph", parents=[common])
    create.add_argument("graph")
    create.add_argument("--cron", required=True,
                        help="5 fields (minute hour day-of-month month day-of-week), or 6 with seconds last")
    _fields(create)
    create.set_defaults(func=create_schedule)

    update = sched.add_parser("update", help="change the options given (others stay)", parents=[common])
    update.add_argument("schedule_id")
    update.add_argument("--cron", default=None)
    _fields(update, defaults=False)
    update.add_argument("--no-end", action="store_true", help="remove the end time")
    update.add_argument("--no-webhook", action="store_true", help="remove the webhook")
    update.add_argument("--new-thread-per-fire", action="store_true", help="drop the fixed thread")
    update.add_argument("--no-options", action="store_true", help="remove the run options")
    update.set_defaults(func=update_schedule)

    ls = sched.add_parser("list", help="list schedules, newest first", parents=[common])
    ls.add_argument("--graph", default="")
    ls.add_argument("--state", choices=sorted(STATES), default=None)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--page-token", default="")
    ls.set_defaults(func=list_schedules)

    for name, func, text in (("get", get_schedule, "show one schedule"),
                             ("delete", delete_schedule, "delete a schedule (its runs stay)"),
                             ("pause", pause_schedule, "stop firing until resumed"),
                             ("resume", resume_schedule, "fire again from the next scheduled time"),
                             ("run-now", run_now, "create a run now, as a fire would")):
        cmd = sched.add_parser(name, help=text, parents=[common])
        cmd.add_argument("schedule_id")
        cmd.set_defaults(func=func)

    fires = sched.add_parser("fires", help="the scheduled times handled: fired, missed, failed", parents=[common])
    fires.add_argument("schedule_id")
    fires.add_argument("--outcome", choices=sorted(OUTCOMES), default=None)
    fires.add_argument("--limit", type=int, default=50)
    fires.add_argument("--page-token", default="")
    fires.set_defaults(func=list_fires)


def _fields(parser, *, defaults: bool = True) -> None:
    d = (lambda value: value) if defaults else (lambda value: None)
    parser.add_argument("--timezone", default=d(""), help="IANA time zone, e.g. Europe/Berlin (default UTC)")
    parser.add_argument("--input", default=d("{}"), help="input as a JSON object (or @file.json)")
    parser.add_argument("--version", default=d(""), help="pin a graph version")
    parser.add_argument("--metadata", action="append", default=d([]), metavar="KEY=VALUE")
    parser.add_argument("--end", default=None, metavar="ISO-TIME", help="no fire after this time (e.g. 2030-01-01T00:00Z)")
    parser.add_argument("--thread", default=None, help="every run joins this thread (default: a new thread per fire)")
    parser.add_argument("--multitask", choices=sorted(STRATEGY_VALUES), default=None,
                        help="with --thread, when the thread is busy (default enqueue)")
    parser.add_argument("--on-run-completed", choices=sorted(ON_COMPLETED), default=None,
                        help="a new thread per fire: keep it (default) or delete it once its run has ended")
    parser.add_argument("--missed", choices=sorted(MISSED), default=None,
                        help="late fires after an outage: skip (default) or catch_up")
    parser.add_argument("--catch-up-limit", type=int, default=None, help="with --missed catch_up (default 10)")
    parser.add_argument("--webhook", default=None, metavar="URL", help="posted to when each run ends")
    parser.add_argument("--webhook-on-waiting", action="store_true", help="also when a run waits for approval")
    parser.add_argument("--options", default=None, metavar="JSON",
                        help="LangGraph run options for every fire's run, as RunOptions JSON (or @file.json), e.g. "
                             "'{\"configurable\": {\"model\": \"small\"}, \"interrupt_before\": [\"review\"]}'")


def _run_options(text: str) -> run_pb2.RunOptions:
    try:
        return json_format.ParseDict(json_format.MessageToDict(json_object(text, "--options")), run_pb2.RunOptions())
    except json_format.ParseError as exc:
        raise SystemExit(f"error: --options is not RunOptions JSON: {exc}") from None


def _metadata(items: list[str]) -> dict[str, str]:
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --metadata {item!r} is not KEY=VALUE")
    return dict(item.split("=", 1) for item in items)


def _timestamp(text: str) -> timestamp_pb2.Timestamp:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"error: --end {text!r} is not an ISO time (e.g. 2030-01-01T00:00:00Z)") from None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when if when.tzinfo else when.replace(tzinfo=timezone.utc))
    return ts


def _set(message, args, paths: list[str]) -> None:
    """Copies the options given into `message`, naming each in `paths`."""
    simple = (("cron", "cron"), ("timezone", "timezone"), ("version", "graph_version"), ("thread", "thread_id"))
    for option, name in simple:
        value = getattr(args, option, None)
        if value is not None:
            setattr(message, name, value)
            paths.append(name)
    if args.input is not None:
        message.input.CopyFrom(json_object(args.input, "--input"))
        paths.append("input")
    if args.metadata is not None:
        message.metadata.update(_metadata(args.metadata))
        paths.append("metadata")
    if args.end is not None:
        message.end_time.CopyFrom(_timestamp(args.end))
        paths.append("end_time")
    for option, name, table in (("multitask", "multitask_strategy", STRATEGY_VALUES),
                                ("on_run_completed", "on_run_completed", ON_COMPLETED),
                                ("missed", "missed_policy", MISSED)):
        value = getattr(args, option)
        if value is not None:
            setattr(message, name, table[value])
            paths.append(name)
    if args.catch_up_limit is not None:
        message.catch_up_limit = args.catch_up_limit
        paths.append("catch_up_limit")
    if args.webhook is not None:
        message.webhook.CopyFrom(run_pb2.Webhook(url=args.webhook, on_waiting=args.webhook_on_waiting))
        paths.append("webhook")
    if args.options is not None:
        message.options.CopyFrom(_run_options(args.options))
        paths.append("options")


def create_schedule(args) -> int:
    request = pb.CreateScheduleRequest(graph=args.graph)
    _set(request, args, [])
    schedule = api_client(args.api).schedules.CreateSchedule(request).schedule
    print(as_json(schedule) if args.json else schedule_details(schedule))
    return 0


def update_schedule(args) -> int:
    schedule = pb.Schedule(schedule_id=args.schedule_id)
    paths: list[str] = []
    _set(schedule, args, paths)
    for flag, name in (("no_end", "end_time"), ("no_webhook", "webhook"), ("new_thread_per_fire", "thread_id"),
                       ("no_options", "options")):
        if getattr(args, flag):
            paths.append(name)
    if not paths:
        raise SystemExit("error: nothing to change: give at least one option (see --help)")
    schedule = api_client(args.api).schedules.UpdateSchedule(pb.UpdateScheduleRequest(
        schedule=schedule, update_mask=field_mask_pb2.FieldMask(paths=sorted(set(paths))))).schedule
    print(as_json(schedule) if args.json else schedule_details(schedule))
    return 0


def list_schedules(args) -> int:
    response = api_client(args.api).schedules.ListSchedules(pb.ListSchedulesRequest(
        graph=args.graph, state=STATES[args.state] if args.state else 0, page_size=args.limit,
        page_token=args.page_token))
    if args.json:
        print(as_json(response))
        return 0
    for schedule in response.schedules:
        print(schedule_line(schedule))
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


def _show(args, call, request_type) -> int:
    schedule = call(request_type(schedule_id=args.schedule_id)).schedule
    print(as_json(schedule) if args.json else schedule_details(schedule))
    return 0


def get_schedule(args) -> int:
    return _show(args, api_client(args.api).schedules.GetSchedule, pb.GetScheduleRequest)


def pause_schedule(args) -> int:
    return _show(args, api_client(args.api).schedules.PauseSchedule, pb.PauseScheduleRequest)


def resume_schedule(args) -> int:
    return _show(args, api_client(args.api).schedules.ResumeSchedule, pb.ResumeScheduleRequest)


def delete_schedule(args) -> int:
    api_client(args.api).schedules.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=args.schedule_id))
    print("{}" if args.json else f"deleted schedule {args.schedule_id}")
    return 0


def run_now(args) -> int:
    reply = api_client(args.api).schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=args.schedule_id))
    print(as_json(reply) if args.json else run_details(reply.run))
    return 0


def list_fires(args) -> int:
    response = api_client(args.api).schedules.ListScheduleFires(pb.ListScheduleFiresRequest(
        schedule_id=args.schedule_id, outcome=OUTCOMES[args.outcome] if args.outcome else 0, page_size=args.limit,
        page_token=args.page_token))
    if args.json:
        print(as_json(response))
        return 0
    for fire in response.fires:
        print(fire_line(fire))
    if response.next_page_token:
        print(f"more: --page-token {response.next_page_token}")
    return 0


# -- rendering -----------------------------------------------------------------------------


def _word(enum, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)


def schedule_line(s: pb.Schedule) -> str:
    state = _word(pb.ScheduleState, s.state, "SCHEDULE_STATE_")
    return (f"{s.schedule_id}  {state:<7} {s.graph}{'@' + s.graph_version if s.graph_version else ''}  "
            f"'{s.cron}' {s.timezone}  next {when_utc(s.next_fire_at)}  owner {s.owner}")


def schedule_details(s: pb.Schedule) -> str:
    lines = [
        f"schedule   {s.schedule_id}",
        f"state      {_word(pb.ScheduleState, s.state, 'SCHEDULE_STATE_')}",
        f"graph      {s.graph}" + (f"  (pinned {s.graph_version})" if s.graph_version else ""),
        f"cron       {s.cron}  ({s.timezone})",
        f"next fire  {when_utc(s.next_fire_at)}",
        f"last fire  {when_utc(s.last_fire_at)}",
        f"end        {when_utc(s.end_time)}",
        f"thread     {_thread(s)}",
        f"missed     {_word(pb.MissedPolicy, s.missed_policy, 'MISSED_POLICY_').lower()}"
        + (f" (up to {s.catch_up_limit})" if s.missed_policy == pb.MISSED_POLICY_CATCH_UP else ""),
        f"owner      {s.owner}",
    ]
    if s.webhook.url:
        lines.append(f"webhook    {s.webhook.url}" + ("  (also on waiting)" if s.webhook.on_waiting else ""))
    if s.metadata:
        lines.append("metadata   " + ", ".join(f"{k}={v}" for k, v in sorted(s.metadata.items())))
    if s.HasField("options"):
        lines.append("options    " + json_format.MessageToJson(s.options, preserving_proto_field_name=True,
                                                                indent=None))
    return "\n".join(lines)


def _thread(s: pb.Schedule) -> str:
    if s.thread_id:
        return f"{s.thread_id} ({_word(run_pb2.MultitaskStrategy, s.multitask_strategy, 'MULTITASK_STRATEGY_').lower()})"
    return f"new per fire ({_word(pb.OnRunCompleted, s.on_run_completed, 'ON_RUN_COMPLETED_').lower()})"


def fire_line(f: pb.ScheduleFire) -> str:
    outcome = _word(pb.FireOutcome, f.outcome, "FIRE_OUTCOME_")
    what = f"run {f.run_id}" if f.run_id else f.detail
    return f"{when_utc(f.fire_time)}  {outcome:<6} {'manual  ' if f.manual else ''}{what}"
