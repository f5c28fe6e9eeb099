"""One fire: the run a schedule asks for at a scheduled time, created through the same path
as CreateRun (graphmesh/submission.py), as the schedule's owner.

The idempotency key is derived from the schedule and the fire time, so a scheduler that
created the run and died before recording the fire cannot double it: whoever handles that
time next gets the same run back.
"""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
from psycopg_pool import PoolTimeout

from graphmesh.auth.principals import Principal, set_current
from graphmesh.errors import AlreadyExists, GraphmeshError, Unavailable
from graphmesh.execution.run_options import RunOptions
from graphmesh.jsonvalues import to_struct
from graphmesh.messages import STRATEGY_VALUES
from graphmesh.store import RunRecord, RunStore
from graphmesh.store.schedules import ScheduleRecord
from graphmesh.submission import RunSubmitter
from graphmesh.v1 import run_service_pb2

# An outage: NATS or Postgres cannot serve us right now (the fire is tried again on the
# next pass, and the missed policy applies if that is too late). Anything else that stops a
# fire (a refusal, a deadline, a bug, a value Postgres rejects) is recorded FAILED with its
# reason: retrying it every pass would only hide the cause.
OUTAGES = (Unavailable, psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, ConnectionError)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


def failure_detail(exc: BaseException) -> str:
    """"CODE: message" for a graphmesh error, "ExceptionClass: message" for anything else."""
    if isinstance(exc, GraphmeshError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class FireRefused(Exception):
    """The run was refused (admission limits, the graph or version gone, a busy thread with
    multitask_strategy=reject, ...) or could not be made for a reason other than an outage
    (a deadline, a bug): `detail` is "CODE: message" (see failure_detail)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def idempotency_key(schedule_id: str, fire_time: datetime) -> str:
    return f"schedule:{schedule_id}:{fire_time.astimezone(timezone.utc).isoformat()}"


def owner_principal(schedule: ScheduleRecord) -> Principal:
    """The schedule acts as its creator, with the roles and graphs it held then."""
    return Principal(schedule.owner, frozenset(schedule.owner_roles), frozenset(schedule.owner_graphs),
                     via=f"schedule:{schedule.schedule_id}")


def run_request(schedule: ScheduleRecord, fire_time: datetime) -> run_service_pb2.CreateRunRequest:
    """The CreateRunRequest of one fire: the schedule's input, metadata and run options
    (checked again by the submitter, against the version the run is routed to)."""
    request = run_service_pb2.CreateRunRequest(
        graph=schedule.graph, graph_version=schedule.graph_version, thread_id=schedule.thread_id or "",
        input=to_struct(schedule.input), metadata=schedule.metadata,
        idempotency_key=idempotency_key(schedule.schedule_id, fire_time),
        multitask_strategy=STRATEGY_VALUES[schedule.multitask_strategy] if schedule.thread_id else 0)
    if schedule.options:
        request.options.CopyFrom(RunOptions.from_json(schedule.options).to_proto())
    return request


async def fire_run(submitter: RunSubmitter, runs: RunStore, schedule: ScheduleRecord,
                   fire_time: datetime) -> RunRecord:
    """The run for `fire_time` (created now, or the one an earlier attempt created).
    FireRefused when the run is refused or fails for any reason but an outage (is_outage),
    which propagates."""
    request = run_request(schedule, fire_time)
    token = set_current(owner_principal(schedule))
    try:
        run, _ = await submitter.create(request, schedule_id=schedule.schedule_id, scheduled_for=fire_time,
                                        webhook=schedule.webhook)
        return run
    except AlreadyExists as exc:
        # The key's run was made from the schedule as it was before an update (its input,
        # version or thread changed since): that run is this fire's.
        existing = await runs.run_by_idempotency_key(schedule.owner, request.idempotency_key)
        if existing is None:
            raise FireRefused(failure_detail(exc)) from exc
        return existing
    except Exception as exc:
        if is_outage(exc):
            raise
        raise FireRefused(failure_detail(exc)) from exc
    finally:
        token.var.reset(token)
