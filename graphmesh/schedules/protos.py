"""Schedules and fires as protos, and the contract's enums as the store's words."""

from __future__ import annotations

from google.protobuf import json_format

from graphmesh.errors import InvalidArgument
from graphmesh.execution.run_options import RunOptions
from graphmesh.jsonvalues import to_struct
from graphmesh.messages import STRATEGY_NAMES, STRATEGY_VALUES, timestamp
from graphmesh.store.schedules import FireRecord, ScheduleRecord
from graphmesh.v1 import run_pb2
from graphmesh.v1 import schedule_service_pb2 as pb

MISSED_POLICY = {pb.MISSED_POLICY_UNSPECIFIED: "skip", pb.MISSED_POLICY_SKIP: "skip",
                 pb.MISSED_POLICY_CATCH_UP: "catch_up"}
MISSED_POLICY_VALUES = {"skip": pb.MISSED_POLICY_SKIP, "catch_up": pb.MISSED_POLICY_CATCH_UP}
ON_RUN_COMPLETED = {pb.ON_RUN_COMPLETED_UNSPECIFIED: "keep", pb.ON_RUN_COMPLETED_KEEP: "keep",
                    pb.ON_RUN_COMPLETED_DELETE: "delete"}
ON_RUN_COMPLETED_VALUES = {"keep": pb.ON_RUN_COMPLETED_KEEP, "delete": pb.ON_RUN_COMPLETED_DELETE}
STATE_VALUES = {"ACTIVE": pb.SCHEDULE_STATE_ACTIVE, "PAUSED": pb.SCHEDULE_STATE_PAUSED,
                "ENDED": pb.SCHEDULE_STATE_ENDED}
OUTCOME_VALUES = {"FIRED": pb.FIRE_OUTCOME_FIRED, "MISSED": pb.FIRE_OUTCOME_MISSED, "FAILED": pb.FIRE_OUTCOME_FAILED}


def enum_word(value: int, table: dict[int, str], field: str) -> str:
    if value not in table:
        raise InvalidArgument(f"unknown {field} {value}", code="INVALID_SCHEDULE")
    return table[value]


def strategy(value: int) -> str:
    """A fixed thread's multitask strategy; UNSPECIFIED is enqueue (a fire waits its turn)."""
    if value == run_pb2.MULTITASK_STRATEGY_UNSPECIFIED:
        return "enqueue"
    return enum_word(value, STRATEGY_NAMES, "multitask_strategy")


def state_filter(value: int) -> str:
    if value == pb.SCHEDULE_STATE_UNSPECIFIED:
        return ""
    return enum_word(value, {v: k for k, v in STATE_VALUES.items()}, "state")


def outcome_filter(value: int) -> str:
    if value == pb.FIRE_OUTCOME_UNSPECIFIED:
        return ""
    return enum_word(value, {v: k for k, v in OUTCOME_VALUES.items()}, "outcome")


def plain_input(message) -> dict:
    return json_format.MessageToDict(message.input) if message.HasField("input") else {}


def options_of(message) -> run_pb2.RunOptions | None:
    """A request's (or a Schedule's) options; None when unset."""
    return message.options if message.HasField("options") else None


def stored_options(options: dict | None) -> run_pb2.RunOptions | None:
    """A schedule record's options as the proto (None: none)."""
    return RunOptions.from_json(options).to_proto() if options else None


def schedule_to_proto(s: ScheduleRecord) -> pb.Schedule:
    msg = pb.Schedule(
        schedule_id=s.schedule_id, graph=s.graph, graph_version=s.graph_version, cron=s.cron, timezone=s.timezone,
        input=to_struct(s.input), metadata=s.metadata, thread_id=s.thread_id or "",
        multitask_strategy=STRATEGY_VALUES[s.multitask_strategy] if s.thread_id else 0,
        on_run_completed=ON_RUN_COMPLETED_VALUES[s.on_run_completed],
        missed_policy=MISSED_POLICY_VALUES[s.missed_policy], catch_up_limit=s.catch_up_limit,
        owner=s.owner, state=STATE_VALUES[s.state])
    if s.webhook:
        msg.webhook.CopyFrom(run_pb2.Webhook(url=s.webhook["url"], on_waiting=bool(s.webhook.get("on_waiting"))))
    if (options := stored_options(s.options)) is not None:
        msg.options.CopyFrom(options)
    for name in ("end_time", "next_fire_at", "last_fire_at", "created_at", "updated_at"):
        ts = timestamp(getattr(s, name))
        if ts is not None:
            getattr(msg, name).CopyFrom(ts)
    return msg


def fire_to_proto(f: FireRecord) -> pb.ScheduleFire:
    return pb.ScheduleFire(schedule_id=f.schedule_id, fire_time=timestamp(f.fire_time),
                           outcome=OUTCOME_VALUES[f.outcome], run_id=f.run_id or "", manual=f.manual,
                           detail=f.detail, recorded_at=timestamp(f.recorded_at))
