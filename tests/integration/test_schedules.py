"""Schedules on a real mesh with two api replicas (one private mesh for the module).

The exactly-once tests drive the clock: two Schedulers in this process, each with its own
pool, tick concurrently at simulated times against the mesh's Postgres (their schedules lie
years ahead, where the replicas' own schedulers, on the real clock, never reach). One test
runs in real time through the replicas, with a seconds-level cron, and kills a replica."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from psycopg.rows import dict_row

from graphmesh.bus import connect_nats
from graphmesh.client import api_client
from graphmesh.db import make_pool
from graphmesh.registry import Registry
from graphmesh.routing import VersionRouter
from graphmesh.schedules.firing import fire_run
from graphmesh.schedules.scheduler import Scheduler
from graphmesh.store import RunStore
from graphmesh.store.rollouts import RolloutStore
from graphmesh.store.schedules import ScheduleStore
from graphmesh.submission import RunSubmitter
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as rpb
from graphmesh.v1 import schedule_service_pb2 as pb
from helpers import COMPLETED, private_mesh, rpc_error, struct, to_dict, wait_for, wait_status

UTC = timezone.utc
FAR = datetime(2035, 1, 1, tzinfo=UTC)  # simulated time: far past anything the replicas' real clock sees


@pytest.fixture(scope="module")
def mesh():
    env = {"GRAPHMESH_SCHEDULER_SECONDS": "0.2", "GRAPHMESH_SCHEDULE_MISSED_AFTER_SECONDS": "30"}
    with private_mesh("schedules", workers=1, api_replicas=2, auth="token", extra_env=env) as m:
        yield m


@pytest.fixture(scope="module")
def tokens(mesh):
    return {name: mesh.create_token(name, roles)[1] for name, roles in (
        ("alice", ["submitter"]), ("bob", ["submitter"]), ("ops", ["operator"]), ("rita", ["reviewer"]))}


@pytest.fixture(scope="module")
def users(mesh, tokens):
    clients = {name: api_client(mesh.api_address, token=token) for name, token in tokens.items()}
    yield clients
    for c in clients.values():
        c.close()


def create(client, **fields) -> pb.Schedule:
    fields.setdefault("graph", "tiny")
    fields.setdefault("input", struct({"text": "scheduled"}))
    return client.schedules.CreateSchedule(pb.CreateScheduleRequest(**fields), timeout=30).schedule


def fires(client, schedule_id: str, **fields) -> list[pb.ScheduleFire]:
    return list(client.schedules.ListScheduleFires(
        pb.ListScheduleFiresRequest(schedule_id=schedule_id, page_size=1000, **fields), timeout=10).fires)


def scheduled_runs(mesh, schedule_id: str) -> list[dict]:
    with psycopg.connect(mesh.database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT run_id, scheduled_for, owner, idempotency_key FROM gm_runs "
                            "WHERE schedule_id = %s ORDER BY scheduled_for", (schedule_id,)).fetchall()


# -- the clock-driven tests: two Schedulers in this process ---------------------------------


class Rig:
    """Two schedulers as two api replicas would run them: each its own pool, NATS
    connection and submitter."""

    def __init__(self, mesh) -> None:
        self.mesh = mesh
        self.pools, self.conns, self.schedulers = [], [], []

    async def __aenter__(self) -> "Rig":
        registry = Registry.default()
        for i in range(2):
            pool = make_pool(self.mesh.database_url, max_size=4, timeout=10)
            await pool.open(wait=True, timeout=30)
            nc = await connect_nats(self.mesh.nats_url, name=f"test-scheduler-{i}")
            store = RunStore(pool)
            submitter = RunSubmitter(store=store, nc=nc, registry=registry,
                                     router=VersionRouter(registry, RolloutStore(store), store), webhook_policy=None)
            self.pools.append(pool)
            self.conns.append(nc)
            self.schedulers.append(Scheduler(runs=store, submitter=submitter, missed_after_seconds=60))
        self.store = ScheduleStore(RunStore(self.pools[0]))
        self.submitter = self.schedulers[0]._submitter
        return self

    async def __aexit__(self, *exc) -> None:
        for nc in self.conns:
            await nc.close()
        for pool in self.pools:
            await pool.close()

    async def schedule(self, start: datetime, **values):
        base = dict(owner="alice", owner_roles=["submitter"], owner_graphs=["*"], graph="tiny", graph_version="",
                    cron="* * * * *", timezone="UTC", input={"text": "clock"}, metadata={}, end_time=None,
                    thread_id=None, multitask_strategy="enqueue", on_run_completed="keep", missed_policy="skip",
                    catch_up_limit=10, webhook=None, next_fire_at=start)
        return await self.store.create({**base, **values})

    async def tick_both(self, now: datetime):
        return await asyncio.gather(*(s.tick(now) for s in self.schedulers))

    async def delete(self, schedule) -> None:
        """Deletes a schedule a test made, so that later tests' ticks (at later simulated
        times) do not work through its backlog."""
        async with self.store.locked(schedule.schedule_id) as (conn, _):
            await ScheduleStore.delete(conn, schedule.schedule_id)


def audit_of(mesh, schedule_id: str) -> list[dict]:
    with psycopg.connect(mesh.database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT actor, action, details FROM gm_audit WHERE details->>'schedule_id' = %s "
                            "ORDER BY record_id", (schedule_id,)).fetchall()


def test_every_minute_fires_exactly_once_per_minute_across_two_schedulers(mesh, users):
    start = FAR

    async def scenario():
        async with Rig(mesh) as rig:
            schedule = await rig.schedule(start)
            fired = []
            for second in range(0, 5 * 60, 20):  # 5 simulated minutes, both "replicas" every 20 s
                for report in await rig.tick_both(start + timedelta(seconds=second)):
                    fired += [f for f in report.fired if f[0] == schedule.schedule_id]
            # A replica that created the 6th minute's run and died before recording the fire:
            # whoever handles that time next gets the same run back through its key.
            sixth = start + timedelta(minutes=5)
            early = await fire_run(rig.submitter, RunStore(rig.pools[1]), schedule, sixth)
            for report in await rig.tick_both(sixth + timedelta(seconds=1)):
                fired += [f for f in report.fired if f[0] == schedule.schedule_id]
            return schedule, fired, early

    schedule, fired, early = asyncio.run(scenario())
    minutes = [FAR + timedelta(minutes=m) for m in range(6)]
    assert sorted(t for _, t, _ in fired) == minutes  # once each, between both schedulers
    rows = fires(users["alice"], schedule.schedule_id)
    assert [f.fire_time.ToDatetime(tzinfo=UTC) for f in reversed(rows)] == minutes
    assert {f.outcome for f in rows} == {pb.FIRE_OUTCOME_FIRED}
    runs = scheduled_runs(mesh, schedule.schedule_id)
    assert [r["scheduled_for"] for r in runs] == minutes  # one run per minute, none doubled
    assert {r["owner"] for r in runs} == {"alice"}
    assert {str(r["run_id"]) for r in runs} == {f.run_id for f in rows}
    assert rows[0].run_id == early.run_id  # the crashed attempt's run is the 6th minute's
    run = wait_status(users["alice"], rows[-1].run_id, COMPLETED)
    assert run.schedule_id == schedule.schedule_id and run.scheduled_for.ToDatetime(tzinfo=UTC) == FAR


def test_after_an_outage_skip_records_missed_and_catch_up_fires_up_to_its_cap(mesh, users):
    start = FAR + timedelta(days=30)
    now = start + timedelta(minutes=10, seconds=1)  # 10 scheduled times over a minute late, one on time

    async def scenario():
        async with Rig(mesh) as rig:
            skip = await rig.schedule(start)
            catch_up = await rig.schedule(start, missed_policy="catch_up", catch_up_limit=3)
            await rig.tick_both(now)
            return skip, catch_up

    skip, catch_up = asyncio.run(scenario())
    minute = [start + timedelta(minutes=m) for m in range(11)]
    alice = users["alice"]

    def outcomes(schedule_id):
        return {f.fire_time.ToDatetime(tzinfo=UTC): f.outcome for f in fires(alice, schedule_id)}

    assert outcomes(skip.schedule_id) == {**{t: pb.FIRE_OUTCOME_MISSED for t in minute[:10]},
                                          minute[10]: pb.FIRE_OUTCOME_FIRED}
    missed = fires(alice, skip.schedule_id, outcome=pb.FIRE_OUTCOME_MISSED)
    assert len(missed) == 10 and all("late" in f.detail and not f.run_id for f in missed)
    assert outcomes(catch_up.schedule_id) == {**{t: pb.FIRE_OUTCOME_MISSED for t in minute[:7]},
                                              **{t: pb.FIRE_OUTCOME_FIRED for t in minute[7:]}}
    assert [r["scheduled_for"] for r in scheduled_runs(mesh, catch_up.schedule_id)] == minute[7:]
    got = alice.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=skip.schedule_id), timeout=10).schedule
    assert got.next_fire_at.ToDatetime(tzinfo=UTC) == minute[10] + timedelta(minutes=1)


def test_a_refused_run_is_recorded_failed_with_the_reason(mesh, users):
    start = FAR + timedelta(days=60)

    async def scenario():
        async with Rig(mesh) as rig:
            gone = await rig.schedule(start, graph="no_such_graph")
            await rig.tick_both(start)
            return gone

    gone = asyncio.run(scenario())
    [fire] = fires(users["alice"], gone.schedule_id)
    assert fire.outcome == pb.FIRE_OUTCOME_FAILED and "GRAPH_NOT_FOUND" in fire.detail and not fire.run_id


def test_a_pass_failing_for_something_other_than_an_outage_records_failed_and_moves_on(mesh, users):
    # A bug's KeyError (a strategy the code has no value for) is not an outage: it must be
    # recorded FAILED with its cause, not rolled back (and retried) on every pass.
    start = FAR + timedelta(days=90)

    async def scenario():
        async with Rig(mesh) as rig:
            broken = await rig.schedule(start, thread_id=f"t-broken-{start.timestamp()}",
                                        multitask_strategy="no_such_strategy")
            report = await rig.schedulers[0].tick(start)
            again = await rig.schedulers[0].tick(start + timedelta(seconds=1))  # nothing due: not retried
            got = await rig.store.get(broken.schedule_id)
            await rig.delete(broken)
            return broken, report, again, got

    broken, report, again, got = asyncio.run(scenario())
    failed = [f for f in report.failed if f[0] == broken.schedule_id]
    assert [(t, "KeyError" in detail) for _, t, detail in failed] == [(start, True)], report.failed
    assert not [f for f in again.failed if f[0] == broken.schedule_id]
    assert got.next_fire_at == start + timedelta(minutes=1) and got.last_fire_at == start


def test_catch_up_limit_at_or_over_the_batch_does_not_break_a_backlogged_pass(mesh):
    start = FAR + timedelta(days=120)
    now = start + timedelta(seconds=700)  # 640 per-second times over a minute late: more than a batch

    async def scenario():
        async with Rig(mesh) as rig:
            # Stored directly: larger than the api allows (MAX_CATCH_UP), and than the batch.
            big = await rig.schedule(start, cron="* * * * * *", missed_policy="catch_up", catch_up_limit=1000)
            report = await rig.schedulers[0].tick(now)
            got = await rig.store.get(big.schedule_id)
            await rig.delete(big)
            return big, report, got

    big, report, got = asyncio.run(scenario())
    missed = [t for sid, t in report.missed if sid == big.schedule_id]
    # 500 late times in the batch, the latest 100 (MAX_CATCH_UP) kept for the pass that decides them.
    assert missed == [start + timedelta(seconds=i) for i in range(400)] and report.backlog
    assert not [f for f in report.failed if f[0] == big.schedule_id]
    assert got.next_fire_at == start + timedelta(seconds=400)


def test_a_per_fire_thread_is_not_purged_before_its_fire_is_recorded(mesh, users):
    # The crash window: a pass created the run (committed) and died before committing its
    # fire row. Purging the thread then would delete the run and its idempotency key, and the
    # next pass would create a second run for the same time.
    start = FAR + timedelta(days=150)
    alice = users["alice"]

    def run_exists(run_id: str) -> bool:
        with psycopg.connect(mesh.database_url) as conn:
            return conn.execute("SELECT 1 FROM gm_runs WHERE run_id = %s", (run_id,)).fetchone() is not None

    async def scenario():
        async with Rig(mesh) as rig:
            schedule = await rig.schedule(start, on_run_completed="delete")
            purger = Scheduler(runs=RunStore(rig.pools[0]), submitter=rig.submitter, missed_after_seconds=60,
                               pool=rig.pools[0])
            early = await fire_run(rig.submitter, RunStore(rig.pools[1]), schedule, start)  # no fire row
            await asyncio.to_thread(wait_status, alice, early.run_id, COMPLETED)
            await purger.delete_ended_threads()  # (the replicas' schedulers purge too, every 0.2 s)
            kept = run_exists(early.run_id)
            report = await purger.tick(start)  # the next pass: the same run, through its key
            fired = [f for f in report.fired if f[0] == schedule.schedule_id]
            await asyncio.to_thread(wait_for, lambda: not run_exists(early.run_id), 60, interval=0.2,
                                    message="the fire's thread to be purged once its fire is recorded")
            await rig.delete(schedule)
            return schedule, early, kept, fired

    schedule, early, kept, fired = asyncio.run(scenario())
    assert kept, "the thread was purged before its fire was recorded"
    assert fired == [(schedule.schedule_id, start, early.run_id)]
    assert [r["run_id"] for r in scheduled_runs(mesh, schedule.schedule_id)] == []  # purged, and never doubled


# -- through the api replicas ------------------------------------------------------------


def test_the_scheduler_gives_each_fire_the_schedules_run_options(mesh, users):
    start = FAR + timedelta(days=180)

    async def scenario():
        async with Rig(mesh) as rig:
            schedule = await rig.schedule(start, options={"interrupt_after": ["normalize"], "tags": ["clock"]})
            reports = await rig.tick_both(start + timedelta(seconds=1))
            await rig.delete(schedule)
            return [f for report in reports for f in report.fired if f[0] == schedule.schedule_id]

    fired = asyncio.run(scenario())
    assert [t for _, t, _ in fired] == [start]
    run = wait_status(users["alice"], fired[0][2], COMPLETED)
    assert list(run.options.interrupt_after) == ["normalize"] and list(run.options.tags) == ["clock"]
    state = users["alice"].runs.GetThreadState(rpb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10)
    assert list(state.next) == ["count"]


def test_seconds_schedule_in_real_time_survives_a_replica_killed_mid_way(mesh, tokens, request):
    alice = api_client(mesh.address("api-2"), token=tokens["alice"])  # the replica that stays up
    request.addfinalizer(alice.close)
    schedule = create(alice, cron="* * * * * */2")
    sid = schedule.schedule_id

    def fired(n):
        return lambda: len(fires(alice, sid)) >= n and fires(alice, sid)

    wait_for(fired(3), 30, interval=0.1, message="3 fires")
    mesh.kill("api", signal.SIGKILL)  # whatever it was doing: a claim, a run half-made
    wait_for(fired(6), 30, interval=0.1, message="3 more fires with one replica")
    mesh.start_service("api")
    wait_for(fired(8), 30, interval=0.1, message="2 more fires with both replicas back")
    alice.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), timeout=10)
    rows = sorted(fires(alice, sid), key=lambda f: f.fire_time.ToDatetime())
    times = [f.fire_time.ToDatetime(tzinfo=UTC) for f in rows]
    assert [b - a for a, b in zip(times, times[1:])] == [timedelta(seconds=2)] * (len(times) - 1), times
    assert {f.outcome for f in rows} == {pb.FIRE_OUTCOME_FIRED}, [f.detail for f in rows]
    runs = scheduled_runs(mesh, sid)
    per_slot = {}
    for r in runs:
        per_slot[r["scheduled_for"]] = per_slot.get(r["scheduled_for"], 0) + 1
    assert per_slot == {t: 1 for t in times}  # no slot missing, none doubled
    assert {str(r["run_id"]) for r in runs} == {f.run_id for f in rows}


def test_run_now_pause_resume_update_delete(mesh, users):
    alice = users["alice"]
    hook = run_pb2.Webhook(url="http://127.0.0.1:9/hook", on_waiting=True)  # a local mesh allows loopback
    schedule = create(alice, cron="0 9 * * 1-5", timezone="Europe/Berlin", metadata={"team": "a"}, webhook=hook)
    sid = schedule.schedule_id
    assert schedule.state == pb.SCHEDULE_STATE_ACTIVE and schedule.owner == "alice"
    first = schedule.next_fire_at.ToDatetime(tzinfo=UTC)
    assert first > datetime.now(UTC) and first.astimezone(timezone(timedelta(hours=1))).hour in (9, 10)

    now = alice.schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=sid), timeout=30)
    assert now.fire.manual and now.fire.outcome == pb.FIRE_OUTCOME_FIRED and now.fire.run_id == now.run.run_id
    run = wait_status(alice, now.run.run_id, COMPLETED)
    assert run.schedule_id == sid and run.metadata["team"] == "a" and run.webhook == hook
    assert [f.run_id for f in fires(alice, sid)] == [run.run_id]

    paused = alice.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), timeout=10).schedule
    assert paused.state == pb.SCHEDULE_STATE_PAUSED
    listed = alice.schedules.ListSchedules(pb.ListSchedulesRequest(state=pb.SCHEDULE_STATE_PAUSED), timeout=10)
    assert sid in {s.schedule_id for s in listed.schedules}
    resumed = alice.schedules.ResumeSchedule(pb.ResumeScheduleRequest(schedule_id=sid), timeout=10).schedule
    assert resumed.state == pb.SCHEDULE_STATE_ACTIVE

    end = timestamp_pb2.Timestamp()
    end.FromDatetime(datetime.now(UTC) + timedelta(days=400))
    updated = alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
        schedule=pb.Schedule(schedule_id=sid, cron="30 6 1 1 *", timezone="UTC", end_time=end),
        update_mask=field_mask_pb2.FieldMask(paths=["cron", "timezone", "end_time"])), timeout=10).schedule
    nxt = updated.next_fire_at.ToDatetime(tzinfo=UTC)
    assert (nxt.month, nxt.day, nxt.hour, nxt.minute) == (1, 1, 6, 30) and updated.cron == "30 6 1 1 *"
    assert updated.metadata["team"] == "a"  # not in the mask: unchanged

    alice.schedules.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=sid), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND"):
        alice.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), timeout=10)
    wait_status(alice, run.run_id, COMPLETED)  # its runs stay

    audit = audit_of(mesh, sid)
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("alice", "schedule_created"), ("alice", "schedule_run_now"), ("alice", "schedule_paused"),
        ("alice", "schedule_resumed"), ("alice", "schedule_updated"), ("alice", "schedule_deleted")]
    assert all(a["details"]["graph"] == "tiny" and "by_other" not in a["details"] for a in audit)
    assert audit[1]["details"]["run_id"] == run.run_id
    assert audit[4]["details"]["changed"] == ["cron", "end_time", "timezone"]


def test_a_schedule_with_run_options_fires_runs_that_carry_them(mesh, users):
    alice = users["alice"]
    asked = run_pb2.RunOptions(interrupt_after=["normalize"], stream_modes=["values", "messages-tuple"],
                               tags=["nightly"])
    asked.configurable.update({"team": "a"})
    schedule = create(alice, cron="0 0 1 1 *", options=asked)
    sid = schedule.schedule_id
    # Checked and normalized as CreateRun's options are (the client's mode name is LangGraph's).
    assert list(schedule.options.stream_modes) == ["values", "messages"]
    assert list(schedule.options.interrupt_after) == ["normalize"] and to_dict(schedule.options.configurable) == \
        {"team": "a"}
    assert alice.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), timeout=10).schedule.options == \
        schedule.options

    def fire_and_state():
        run = alice.schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=sid), timeout=30).run
        run = wait_status(alice, run.run_id, COMPLETED)
        return run, alice.runs.GetThreadState(rpb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10)

    run, state = fire_and_state()
    assert run.options == schedule.options and run.schedule_id == sid
    assert list(state.next) == ["count"]  # the static interrupt stopped the fire's run after normalize

    # Replaced through the field mask; the next fire runs with the new options.
    changed = alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
        schedule=pb.Schedule(schedule_id=sid, options=run_pb2.RunOptions(interrupt_before=["summarize"])),
        update_mask=field_mask_pb2.FieldMask(paths=["options"])), timeout=10).schedule
    assert changed.options == run_pb2.RunOptions(interrupt_before=["summarize"])
    run, state = fire_and_state()
    assert list(run.options.interrupt_before) == ["summarize"] and list(state.next) == ["summarize"]

    # Named in the mask and left unset: cleared; the fire's run has none and runs to the end.
    cleared = alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
        schedule=pb.Schedule(schedule_id=sid), update_mask=field_mask_pb2.FieldMask(paths=["options"])),
        timeout=10).schedule
    assert not cleared.HasField("options")
    run, state = fire_and_state()
    assert not run.HasField("options") and list(state.next) == [] and to_dict(state.values)["summary"]

    # Bad options are refused at create and update, as CreateRun refuses them.
    for options, code, words in ((run_pb2.RunOptions(interrupt_before=["nope"]), "UNKNOWN_NODE", "nope"),
                                 (run_pb2.RunOptions(stream_modes=["nope"]), "UNKNOWN_STREAM_MODE", "nope"),
                                 (run_pb2.RunOptions(checkpoint_id="1ef0aaaa-0000"), "INVALID_SCHEDULE", "checkpoint_id"),
                                 (run_pb2.RunOptions(command_goto=["count"]), "INVALID_SCHEDULE", "command_goto")):
        with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, code) as info:
            create(alice, cron="0 0 1 1 *", options=options)
        assert words in info["details"]
        with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, code):
            alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
                schedule=pb.Schedule(schedule_id=sid, options=options),
                update_mask=field_mask_pb2.FieldMask(paths=["options"])), timeout=10)
    assert not alice.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), timeout=10).schedule.HasField(
        "options")
    assert [a["details"]["changed"] for a in audit_of(mesh, sid) if a["action"] == "schedule_updated"] == \
        [["options"], ["options"]]


def test_a_new_thread_per_fire_is_deleted_once_its_run_ended(mesh, users):
    alice = users["alice"]
    schedule = create(alice, cron="0 0 1 1 *", on_run_completed=pb.ON_RUN_COMPLETED_DELETE)
    run = alice.schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=schedule.schedule_id), timeout=30).run

    def gone():
        try:
            alice.runs.GetRun(rpb.GetRunRequest(run_id=run.run_id), timeout=10)
            return False
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.NOT_FOUND

    wait_for(gone, 60, interval=0.2, message="the fire's thread to be purged")
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        alice.runs.GetThreadState(rpb.GetThreadStateRequest(thread_id=run.thread_id), timeout=10)
    with psycopg.connect(mesh.database_url, row_factory=dict_row) as conn:
        audit = conn.execute("SELECT actor, action FROM gm_audit WHERE details->>'thread_id' = %s",
                             (run.thread_id,)).fetchall()
    assert audit == [{"actor": f"schedule:{schedule.schedule_id}", "action": "thread_purged"}]


def test_only_the_owner_and_operators_see_and_change_a_schedule(mesh, users):
    alice, bob, ops, rita = users["alice"], users["bob"], users["ops"], users["rita"]
    sid = create(alice, cron="0 0 1 1 *").schedule_id
    mask = field_mask_pb2.FieldMask(paths=["cron"])
    for call in (lambda: bob.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), timeout=10),
                 lambda: bob.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
                     schedule=pb.Schedule(schedule_id=sid, cron="* * * * *"), update_mask=mask), timeout=10),
                 lambda: bob.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), timeout=10),
                 lambda: bob.schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=sid), timeout=10),
                 lambda: bob.schedules.ListScheduleFires(pb.ListScheduleFiresRequest(schedule_id=sid), timeout=10),
                 lambda: bob.schedules.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=sid), timeout=10)):
        with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_SCHEDULE"):
            call()
    assert sid not in {s.schedule_id for s in bob.schedules.ListSchedules(pb.ListSchedulesRequest(), timeout=10)
                       .schedules}
    assert ops.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=sid), timeout=10).schedule.owner == "alice"
    assert sid in {s.schedule_id for s in ops.schedules.ListSchedules(pb.ListSchedulesRequest(), timeout=10)
                   .schedules}
    paused = ops.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=sid), timeout=10).schedule
    assert paused.state == pb.SCHEDULE_STATE_PAUSED and paused.owner == "alice"
    audit = audit_of(mesh, sid)  # bob's refused attempts left none
    assert [(a["actor"], a["action"]) for a in audit] == [("alice", "schedule_created"), ("ops", "schedule_paused")]
    assert audit[1]["details"]["owner"] == "alice" and "ops acted on alice's schedule" in audit[1]["details"]["by_other"]
    with rpc_error(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"):
        create(rita, cron="0 0 1 1 *")


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


@pytest.mark.parametrize("fields, code, gm_code, words", [
    (dict(graph="nope", cron="* * * * *"), grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND", "nope"),
    (dict(graph_version="99", cron="* * * * *"), grpc.StatusCode.NOT_FOUND, "GRAPH_VERSION_NOT_FOUND", "99"),
    (dict(graph=""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE", "graph is required"),
    (dict(cron="* * *"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CRON", "3 fields"),
    (dict(cron="99 * * * *"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CRON", "99"),
    (dict(cron="* * * * *", timezone="Nowhere/City"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TIMEZONE",
     "Nowhere/City"),
    (dict(cron="* * * * *", end_time=_ts(datetime(2020, 1, 1, tzinfo=UTC))), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_END_TIME", "not in the future"),
    (dict(cron="* * * * *", input=struct({"text": 5})), grpc.StatusCode.INVALID_ARGUMENT, None, "text"),
    (dict(cron="* * * * *", thread_id="t-fixed", multitask_strategy=42), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_SCHEDULE", "multitask_strategy"),
    (dict(cron="* * * * *", thread_id="t-fixed", on_run_completed=pb.ON_RUN_COMPLETED_DELETE),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE", "fixed thread_id"),
    (dict(cron="* * * * *", missed_policy=pb.MISSED_POLICY_CATCH_UP, catch_up_limit=500),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE", "catch_up_limit"),
    (dict(cron="* * * * *", end_time=timestamp_pb2.Timestamp(seconds=10**12)), grpc.StatusCode.INVALID_ARGUMENT,
     "INVALID_END_TIME", "end_time"),
    (dict(cron="* * * * *", end_time=timestamp_pb2.Timestamp(seconds=2**40, nanos=-1)),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_END_TIME", "end_time"),
    (dict(cron="* * * * *", timezone="UTC\x00"), grpc.StatusCode.INVALID_ARGUMENT, "NUL_CHARACTER", "timezone"),
    (dict(cron="* " * 5000), grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG", "cron"),
    (dict(cron="* * * * *", missed_policy=pb.MISSED_POLICY_CATCH_UP, catch_up_limit=2**32 - 1),
     grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE", "catch_up_limit"),
    (dict(cron="* * * * *", metadata={"k": "v" * 4000, "l": "v" * 4000, "m": "v" * 4000, "n": "v" * 4000,
                                      "o": "v" * 4000}), grpc.StatusCode.INVALID_ARGUMENT, None, "metadata"),
    (dict(cron="* * * * *", webhook=run_pb2.Webhook(url="ftp://example.com/hook")),
     grpc.StatusCode.INVALID_ARGUMENT, "WEBHOOK_TARGET_REFUSED", "ftp"),
])
def test_bad_schedules_are_refused_with_a_clear_status(mesh, users, fields, code, gm_code, words):
    with rpc_error(code, gm_code) as info:
        create(users["alice"], **fields)
    assert words in info["details"]


def test_bad_updates_and_ids(mesh, users):
    alice = users["alice"]
    sid = create(alice, cron="0 0 1 1 *").schedule_id
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE") as info:
        alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=sid, graph="other"),
            update_mask=field_mask_pb2.FieldMask(paths=["graph"])), timeout=10)
    assert "graph" in info["details"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SCHEDULE"):
        alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(schedule=pb.Schedule(schedule_id=sid)), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CRON"):
        alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=sid, cron="nonsense"),
            update_mask=field_mask_pb2.FieldMask(paths=["cron"])), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "NOT_FOUND"):
        alice.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id="not-a-uuid"), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        alice.schedules.ListSchedules(pb.ListSchedulesRequest(page_size=5000), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        alice.schedules.ListSchedules(pb.ListSchedulesRequest(page_token="garbage"), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_END_TIME"):
        alice.schedules.UpdateSchedule(pb.UpdateScheduleRequest(
            schedule=pb.Schedule(schedule_id=sid, end_time=timestamp_pb2.Timestamp(seconds=10**12)),
            update_mask=field_mask_pb2.FieldMask(paths=["end_time"])), timeout=10)
    tokens = ["garbage", "W10=", "WzEsIDJd", "eyJhIjogMX0=", "WyJub3QgYSB0aW1lIiwgIngiXQ==", "\u00e9\u00e9"]
    for token in tokens:  # [], [1, 2], {"a": 1}, ["not a time", "x"], non-ASCII
        for call in (lambda: alice.schedules.ListSchedules(pb.ListSchedulesRequest(page_token=token), timeout=10),
                     lambda: alice.schedules.ListScheduleFires(pb.ListScheduleFiresRequest(
                         schedule_id=sid, page_token=token), timeout=10)):
            with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
                call()


def test_list_pages_through_every_schedule(mesh, users):
    ops = users["ops"]
    made = {create(ops, cron="0 0 1 1 *", metadata={"page": "yes"}).schedule_id for _ in range(5)}
    seen, token = [], ""
    while True:
        page = ops.schedules.ListSchedules(pb.ListSchedulesRequest(page_size=2, page_token=token), timeout=10)
        seen += [s.schedule_id for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_cli_create_list_and_fires(mesh, users):
    _, token = mesh.create_token("carol", ["submitter"])
    cli = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())", "--api",
           mesh.api_address, "--token", token]
    made = subprocess.run([*cli, "--json", "schedules", "create", "tiny", "--cron", "0 0 1 1 *", "--input",
                           '{"text": "cli"}', "--timezone", "Europe/Paris", "--options", '{"tags": ["cli"]}'],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    sid = json.loads(made.stdout)["schedule_id"]
    assert json.loads(made.stdout)["options"] == {"tags": ["cli"]}
    carol = api_client(mesh.api_address, token=token)
    carol.schedules.RunScheduleNow(pb.RunScheduleNowRequest(schedule_id=sid), timeout=30)
    carol.close()
    listed = subprocess.run([*cli, "schedules", "fires", sid], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "FIRED" in listed.stdout and "manual" in listed.stdout, listed.stderr
    bad = subprocess.run([*cli, "schedules", "create", "tiny", "--cron", "* *", "--input", '{"text": "x"}'], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "INVALID_ARGUMENT (INVALID_CRON)" in bad.stderr
