"""ScheduleService: translates protos to schedule-store calls and back; the scheduler that
fires them is graphmesh/schedules/scheduler.py.

Who may do what (beyond the rules table): creating needs submitter or operator on the
graph, and the creator becomes the owner (its roles and graphs are stored: the schedule's
runs are created as it). The owner sees and changes its schedules; an operator those of
the graphs it covers. Every change holds the schedule's row lock, so it never interleaves
with a fire, and writes an audit record (actor: the caller) in the same transaction."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from graphmesh.errors import InvalidArgument, PermissionDenied
from graphmesh.messages import run_to_proto
from graphmesh.rpc.principal import caller
from graphmesh.schedules import protos
from graphmesh.schedules.firing import FireRefused, fire_run, owner_principal
from graphmesh.schedules.scheduler import FIRES
from graphmesh.schedules.spec import ScheduleChecker, catch_up_limit, first_fire, next_fire
from graphmesh.store import RunStore
from graphmesh.store.audit import record_audit
from graphmesh.store.paging import page_size
from graphmesh.store.schedules import EDITABLE, FireRecord, ScheduleRecord, ScheduleStore
from graphmesh.submission import RunSubmitter
from graphmesh.v1 import schedule_service_pb2 as pb
from graphmesh.v1 import schedule_service_pb2_grpc

# A new cron, time zone or end time restarts the schedule from now.
RETIMING = frozenset({"cron", "timezone", "end_time"})


def _end_time(message) -> datetime | None:
    if not message.HasField("end_time"):
        return None
    try:
        return message.end_time.ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError) as exc:  # seconds or nanos out of the Timestamp range
        raise InvalidArgument(f"end_time is not a valid time: {exc}", code="INVALID_END_TIME") from None


def ensure_can_manage(me, schedule: ScheduleRecord, action: str) -> None:
    """The owner, or an operator of the schedule's graph."""
    if schedule.owner == me.name or (me.has("operator") and me.covers(schedule.graph)):
        return
    raise PermissionDenied(f"{me.name} may not {action} schedule {schedule.schedule_id}: it is not its owner and "
                           f"does not operate graph '{schedule.graph}'", code="NOT_YOUR_SCHEDULE")


async def _audit(conn, me, action: str, schedule: ScheduleRecord, **details: Any) -> None:
    """One audit record of a change to a schedule, actor the caller; when it is not the
    schedule's owner (an operator of its graph), the record says so."""
    record = {"schedule_id": schedule.schedule_id, "graph": schedule.graph, "owner": schedule.owner, **details}
    if me.name != schedule.owner:
        record["by_other"] = f"{me.name} acted on {schedule.owner}'s schedule as an operator of graph " \
                             f"'{schedule.graph}'"
    await record_audit(conn, me.name, action, details=record)


class ScheduleServicer(schedule_service_pb2_grpc.ScheduleServiceServicer):
    def __init__(self, *, store: RunStore, registry, submitter: RunSubmitter) -> None:
        self._runs = store
        self._schedules = ScheduleStore(store)
        self._registry = registry
        self._submitter = submitter
        self._check = ScheduleChecker(registry=registry, submitter=submitter)

    async def CreateSchedule(self, request, context):
        me = caller()
        if not request.graph:
            raise InvalidArgument("graph is required", code="INVALID_SCHEDULE")
        graph = self._registry.get(request.graph).name  # NOT_FOUND for an unknown graph
        me.require("submitter", "operator", graph=graph, action=f"schedule runs of graph '{graph}'")
        graph_input = self._check.graph_input(graph, request.graph_version, protos.plain_input(request))
        cron = self._check.cron(request.cron, request.timezone)
        end_time = _end_time(request)
        values: dict[str, Any] = dict(
            owner=me.name, owner_roles=sorted(me.roles), owner_graphs=sorted(me.graphs), graph=graph,
            graph_version=request.graph_version, cron=cron.expression, timezone=cron.timezone, input=graph_input,
            metadata=self._check.metadata(dict(request.metadata)), end_time=end_time,
            multitask_strategy=protos.strategy(request.multitask_strategy),
            on_run_completed=protos.enum_word(request.on_run_completed, protos.ON_RUN_COMPLETED, "on_run_completed"),
            missed_policy=protos.enum_word(request.missed_policy, protos.MISSED_POLICY, "missed_policy"),
            catch_up_limit=catch_up_limit(request.catch_up_limit),
            webhook=self._check.webhook(request.webhook.url, request.webhook.on_waiting),
            options=self._check.options(graph, request.graph_version, protos.options_of(request)))
        _check_thread_policy(request.thread_id, values["on_run_completed"])
        async with self._schedules.transaction() as conn:  # one connection: the clock, the thread, the insert
            values["next_fire_at"] = first_fire(cron, await self._schedules.now(conn), end_time)
            values["thread_id"] = await self._check.thread(conn, me, graph, request.thread_id)
            schedule = await ScheduleStore.insert(conn, values)
            await _audit(conn, me, "schedule_created", schedule, cron=schedule.cron, timezone=schedule.timezone)
        return pb.CreateScheduleResponse(schedule=protos.schedule_to_proto(schedule))

    async def _visible(self, schedule_id: str) -> ScheduleRecord:
        schedule = await self._schedules.get(schedule_id)
        ensure_can_manage(caller(), schedule, "see")
        return schedule

    async def GetSchedule(self, request, context):
        return pb.GetScheduleResponse(schedule=protos.schedule_to_proto(await self._visible(request.schedule_id)))

    async def ListSchedules(self, request, context):
        size = page_size(request.page_size)
        me = caller()
        operator = me.has("operator")
        schedules, token = await self._schedules.list_schedules(
            owner=None if operator else me.name,
            graphs=None if not operator or me.covers("*") else sorted(me.graphs),
            graph=request.graph, state=protos.state_filter(request.state), page_size=size,
            page_token=request.page_token)
        return pb.ListSchedulesResponse(schedules=[protos.schedule_to_proto(s) for s in schedules],
                                        next_page_token=token)

    async def UpdateSchedule(self, request, context):
        paths = set(request.update_mask.paths)
        if not paths:
            raise InvalidArgument("update_mask names no field to change", code="INVALID_SCHEDULE")
        unknown = sorted(paths - set(EDITABLE))
        if unknown:
            raise InvalidArgument(f"update_mask names fields that cannot be changed: {', '.join(unknown)} "
                                  f"(changeable: {', '.join(EDITABLE)})", code="INVALID_SCHEDULE")
        wanted = request.schedule
        me = caller()
        async with self._schedules.locked(wanted.schedule_id) as (conn, current):
            ensure_can_manage(me, current, "update")
            changes = await self._changes(conn, current, wanted, paths)
            schedule = await ScheduleStore.update(conn, current.schedule_id, changes)
            await _audit(conn, me, "schedule_updated", schedule, changed=sorted(paths))
        return pb.UpdateScheduleResponse(schedule=protos.schedule_to_proto(schedule))

    async def _changes(self, conn, current: ScheduleRecord, wanted, paths: set[str]) -> dict[str, Any]:
        """The columns to set, each checked as CreateSchedule checks it, against the merged
        schedule; looked up on `conn`, which holds the schedule's row lock."""
        changes: dict[str, Any] = {}
        if paths & {"graph_version", "input"}:
            version = wanted.graph_version if "graph_version" in paths else current.graph_version
            value = protos.plain_input(wanted) if "input" in paths else current.input
            changes["input"] = self._check.graph_input(current.graph, version, value)
            changes["graph_version"] = version
        if paths & {"graph_version", "options"}:
            # Options name nodes and are held to the version's limits: checked against the
            # version the schedule will run, whichever of the two changed.
            version = changes.get("graph_version", current.graph_version)
            message = protos.options_of(wanted) if "options" in paths else protos.stored_options(current.options)
            changes["options"] = self._check.options(current.graph, version, message)
        if "metadata" in paths:
            changes["metadata"] = self._check.metadata(dict(wanted.metadata))
        if "thread_id" in paths:
            # The schedule's runs are its owner's: the thread must be one the owner may use.
            changes["thread_id"] = await self._check.thread(conn, owner_principal(current), current.graph,
                                                            wanted.thread_id)
        if "multitask_strategy" in paths:
            changes["multitask_strategy"] = protos.strategy(wanted.multitask_strategy)
        if "on_run_completed" in paths:
            changes["on_run_completed"] = protos.enum_word(wanted.on_run_completed, protos.ON_RUN_COMPLETED,
                                                           "on_run_completed")
        if "missed_policy" in paths:
            changes["missed_policy"] = protos.enum_word(wanted.missed_policy, protos.MISSED_POLICY, "missed_policy")
        if "catch_up_limit" in paths:
            changes["catch_up_limit"] = catch_up_limit(wanted.catch_up_limit)
        if "webhook" in paths:
            changes["webhook"] = self._check.webhook(wanted.webhook.url, wanted.webhook.on_waiting)
        _check_thread_policy(changes.get("thread_id", current.thread_id),
                             changes.get("on_run_completed", current.on_run_completed))
        if paths & RETIMING:
            cron = self._check.cron(wanted.cron if "cron" in paths else current.cron,
                                    wanted.timezone if "timezone" in paths else current.timezone)
            end_time = _end_time(wanted) if "end_time" in paths else current.end_time
            changes.update(cron=cron.expression, timezone=cron.timezone, end_time=end_time,
                           next_fire_at=first_fire(cron, await self._schedules.now(conn), end_time))
        return changes

    async def DeleteSchedule(self, request, context):
        me = caller()
        async with self._schedules.locked(request.schedule_id) as (conn, schedule):
            ensure_can_manage(me, schedule, "delete")
            await ScheduleStore.delete(conn, schedule.schedule_id)
            await _audit(conn, me, "schedule_deleted", schedule)
        return pb.DeleteScheduleResponse()

    async def PauseSchedule(self, request, context):
        me = caller()
        async with self._schedules.locked(request.schedule_id) as (conn, schedule):
            ensure_can_manage(me, schedule, "pause")
            if not schedule.paused:
                schedule = await ScheduleStore.set_paused(conn, schedule.schedule_id, True, schedule.next_fire_at)
                await _audit(conn, me, "schedule_paused", schedule)
        return pb.PauseScheduleResponse(schedule=protos.schedule_to_proto(schedule))

    async def ResumeSchedule(self, request, context):
        me = caller()
        async with self._schedules.locked(request.schedule_id) as (conn, schedule):
            ensure_can_manage(me, schedule, "resume")
            if schedule.paused:
                # The times that passed while paused are not owed: on from the next one.
                cron = self._check.cron(schedule.cron, schedule.timezone)
                following = next_fire(cron, await self._schedules.now(conn), schedule.end_time)
                schedule = await ScheduleStore.set_paused(conn, schedule.schedule_id, False, following)
                await _audit(conn, me, "schedule_resumed", schedule)
        return pb.ResumeScheduleResponse(schedule=protos.schedule_to_proto(schedule))

    async def RunScheduleNow(self, request, context):
        me = caller()
        schedule = await self._schedules.get(request.schedule_id)
        ensure_can_manage(me, schedule, "run")
        now = await self._schedules.now()
        try:
            run = await fire_run(self._submitter, self._runs, schedule, now)
        except FireRefused as refused:
            raise refused.__cause__ from None  # the refusal itself, with its status code
        async with self._schedules.transaction() as conn:
            await ScheduleStore.record_fire(conn, schedule.schedule_id, now, "FIRED", run_id=run.run_id, manual=True,
                                            detail="run now")
            await _audit(conn, me, "schedule_run_now", schedule, run_id=run.run_id, fire_time=now.isoformat())
        FIRES.add(1, {"outcome": "FIRED", "manual": True})
        fire = FireRecord(schedule.schedule_id, now, "FIRED", run.run_id, True, "run now", now)
        return pb.RunScheduleNowResponse(run=run_to_proto(run), fire=protos.fire_to_proto(fire))

    async def ListScheduleFires(self, request, context):
        size = page_size(request.page_size)
        schedule = await self._visible(request.schedule_id)
        fires, token = await self._schedules.fires(schedule.schedule_id, outcome=protos.outcome_filter(request.outcome),
                                                   page_size=size, page_token=request.page_token)
        return pb.ListScheduleFiresResponse(fires=[protos.fire_to_proto(f) for f in fires], next_page_token=token)


def _check_thread_policy(thread_id: str | None, on_run_completed: str) -> None:
    if thread_id and on_run_completed == "delete":
        raise InvalidArgument("on_run_completed=delete applies to a new thread per fire; a schedule with a fixed "
                              "thread_id keeps its thread", code="INVALID_SCHEDULE")

