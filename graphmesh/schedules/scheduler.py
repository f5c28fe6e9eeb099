"""The scheduler: turns due schedules into runs, exactly once per scheduled time, from any
number of api replicas.

Postgres decides, not a timer per process. Every pass (`tick(now)`), a replica claims due
schedules one at a time with SELECT ... FOR UPDATE SKIP LOCKED: a schedule another replica
holds is skipped, and one it has just advanced is no longer due. In the claim's transaction
the replica works out the scheduled times up to `now`, creates each run (its own
transaction, idempotency key schedule:ID:TIME), writes one gm_schedule_fires row per time
(primary key (schedule, time), ON CONFLICT DO NOTHING) and moves next_fire_at on. A replica
that dies half-way leaves the lock to Postgres: the next claimant recomputes the same
times and gets the runs already made back through their keys.

A time handled more than `missed_after_seconds` after it (an outage, every replica down)
is late, and the schedule's missed_policy applies: `skip` records it MISSED; `catch_up`
fires the latest `catch_up_limit` late times and records the earlier ones MISSED. A run
refused (admission limits, the graph gone, a busy thread under `reject`) or failed for any
other reason but an outage (a deadline, a bug, a value Postgres rejects) is recorded FAILED
with the reason, and logged as a warning; only an outage (NATS or Postgres away) rolls the
pass back for that schedule, to be tried again on the next.

The clock is injectable: by default each pass reads Postgres' clock, so replicas with
drifting host clocks still agree on what is due; tests pass `now` themselves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from graphmesh.errors import GraphmeshError, InvalidArgument
from graphmesh.loops import run_periodically
from graphmesh.retention import purge_thread
from graphmesh.schedules.cron import parse_cron
from graphmesh.schedules.firing import FireRefused, failure_detail, fire_run, is_outage
from graphmesh.schedules.spec import MAX_CATCH_UP, next_fire
from graphmesh.store import RunStore
from graphmesh.store.schedules import ScheduleRecord, ScheduleStore
from graphmesh.submission import RunSubmitter
from graphmesh.telemetry.metrics import meter
from graphmesh.telemetry.metrics import seconds_histogram as _seconds_histogram

log = logging.getLogger(__name__)

FIRES = meter.create_counter("graphmesh.schedule.fires", unit="{fire}",
                             description="Scheduled times handled, by outcome (FIRED, MISSED, FAILED) and manual")
LAG = _seconds_histogram("graphmesh.schedule.lag", "How long after its scheduled time a fire was handled")

# Scheduled times one schedule handles per pass (a long outage of a per-second schedule
# is worked off over several passes, each bounded).
BATCH = 500
# Schedules one pass handles at most (the pass then ends; the next continues).
SCHEDULES_PER_PASS = 200
# Passes run back to back while a backlog remains, before the loop sleeps again.
BACKLOG_PASSES = 20
DELETE_BATCH = 20
# A per-fire thread whose purge failed is not tried again by this process for this long, so
# it cannot keep the batch from the others.
PURGE_RETRY_SECONDS = 300.0
EPSILON = timedelta(microseconds=1)


@dataclass
class TickReport:
    fired: list[tuple[str, datetime, str]] = field(default_factory=list)  # (schedule, time, run id)
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    failed: list[tuple[str, datetime, str]] = field(default_factory=list)  # (schedule, time, detail)
    backlog: bool = False  # some schedule has more due times than one pass handles


class Scheduler:
    def __init__(self, *, runs: RunStore, submitter: RunSubmitter, missed_after_seconds: float,
                 pool=None, js=None, clock: Callable[[], datetime] | None = None, batch: int = BATCH) -> None:
        if batch <= MAX_CATCH_UP:
            # A pass keeps the latest catch_up_limit late times for the pass that decides
            # them, so it must handle more than that many.
            raise ValueError(f"batch must be more than the largest catch_up_limit ({MAX_CATCH_UP}), not {batch}")
        self._runs = runs
        self._schedules = ScheduleStore(runs)
        self._submitter = submitter
        self._missed_after = timedelta(seconds=missed_after_seconds)
        self._pool = pool  # for deleting per-fire threads (None: not done here)
        self._js = js
        self._clock = clock
        self._batch = batch
        self._purge_failed: dict[str, float] = {}  # thread id -> monotonic time to try again

    async def now(self) -> datetime:
        return self._clock() if self._clock is not None else await self._schedules.now()

    async def tick(self, now: datetime | None = None) -> TickReport:
        """One pass over the schedules due at `now` (default: the clock). A schedule whose
        pass failed for an outage is left for the next pass; the first such failure is
        raised once every other due schedule has had its turn. A pass that failed for
        anything else records its scheduled time FAILED with the error (see _fail_pass)."""
        now = now or await self.now()
        report = TickReport()
        done: list[str] = []
        failure: Exception | None = None
        for _ in range(SCHEDULES_PER_PASS):
            claimed: list[ScheduleRecord] = []
            sizes = (len(report.fired), len(report.missed), len(report.failed))
            try:
                async with self._schedules.claim_due(now, done) as (conn, schedule):
                    if schedule is None:
                        break
                    claimed.append(schedule)
                    done.append(schedule.schedule_id)
                    await self._handle(conn, schedule, now, report)
            except Exception as exc:
                if not claimed:  # the claim itself failed: Postgres is away
                    raise
                # What the rolled-back pass reported did not happen.
                del report.fired[sizes[0]:], report.missed[sizes[1]:], report.failed[sizes[2]:]
                if is_outage(exc):
                    log.info("schedule %s: pass rolled back for an outage, retried next pass: %s",
                             claimed[0].schedule_id, exc)
                    failure = failure or exc
                    continue
                log.warning("schedule %s: pass failed: %s", claimed[0].schedule_id, failure_detail(exc),
                            exc_info=exc)
                try:
                    await self._fail_pass(claimed[0], exc, now, report)
                except Exception as again:
                    log.warning("schedule %s: the failure could not be recorded either: %s",
                                claimed[0].schedule_id, failure_detail(again))
                    failure = failure or again
        if failure is not None:
            raise failure
        return report

    async def _fail_pass(self, claimed: ScheduleRecord, exc: Exception, now: datetime, report: TickReport) -> None:
        """A pass rolled back for something other than an outage (a bug, a value Postgres
        rejects): its first scheduled time is recorded FAILED with the error and the
        schedule moves past it, so the cause is visible and the schedule is not stuck
        retrying it every second."""
        async with self._schedules.locked(claimed.schedule_id) as (conn, schedule):
            t = schedule.next_fire_at
            if schedule.paused or t is None or t != claimed.next_fire_at:
                return  # changed meanwhile (another replica, an update): nothing of ours to record
            try:
                following = next_fire(parse_cron(schedule.cron, schedule.timezone), t, schedule.end_time)
            except InvalidArgument:
                following = None
            await self._record(conn, schedule, t, "FAILED", now, report,
                               detail=f"the pass failed: {failure_detail(exc)}")
            await self._schedules.advance(conn, schedule.schedule_id, following, t)

    async def _handle(self, conn, schedule: ScheduleRecord, now: datetime, report: TickReport) -> None:
        sid = schedule.schedule_id
        try:
            cron = parse_cron(schedule.cron, schedule.timezone)
        except InvalidArgument as exc:
            # Valid when stored; a time zone database without its zone now. Ended, visibly.
            log.error("schedule %s can no longer be evaluated, ending it: %s", sid, exc.message)
            await self._record(conn, schedule, schedule.next_fire_at, "FAILED", now, report, detail=exc.message)
            await self._schedules.advance(conn, sid, None, None)
            return
        start = schedule.next_fire_at
        cut = now - self._missed_after  # a time before this is late
        late, more_late = cron.times(start, cut - EPSILON, limit=self._batch, end=schedule.end_time)
        # At most MAX_CATCH_UP (< batch, checked in __init__), so `handled` below is never empty.
        keep = min(schedule.catch_up_limit, MAX_CATCH_UP) if schedule.missed_policy == "catch_up" else 0
        if more_late:
            # More late times follow; at least `keep` of them remain after those recorded
            # MISSED here, so none of these is among the latest `keep` that catch up.
            handled = late[:len(late) - keep] if keep else late
            for t in handled:
                await self._record(conn, schedule, t, "MISSED", now, report)
            following = late[len(handled)] if len(handled) < len(late) else cron.next_after(late[-1])
            await self._schedules.advance(conn, sid, following, handled[-1])
            report.backlog = True
            return
        catching_up = set(late[len(late) - keep:]) if keep else set()
        for t in late:
            if t in catching_up:
                await self._fire(conn, schedule, t, now, report)
            else:
                await self._record(conn, schedule, t, "MISSED", now, report)
        on_time, more = cron.times(max(start, cut), now, limit=self._batch, end=schedule.end_time)
        for t in on_time:
            await self._fire(conn, schedule, t, now, report)
        handled = late + on_time
        report.backlog = report.backlog or more
        last = handled[-1] if handled else None
        following = next_fire(cron, last or now, schedule.end_time)  # None: ended
        await self._schedules.advance(conn, sid, following, last)

    async def _fire(self, conn, schedule: ScheduleRecord, t: datetime, now: datetime, report: TickReport) -> None:
        try:
            run = await fire_run(self._submitter, self._runs, schedule, t)
        except FireRefused as refused:
            log.warning("schedule %s: the run for %s was refused or failed: %s", schedule.schedule_id,
                        t.isoformat(), refused.detail)
            await self._record(conn, schedule, t, "FAILED", now, report, detail=refused.detail)
            return
        await self._record(conn, schedule, t, "FIRED", now, report, run_id=run.run_id)

    async def _record(self, conn, schedule: ScheduleRecord, t: datetime, outcome: str, now: datetime,
                      report: TickReport, *, run_id: str | None = None, detail: str = "") -> None:
        if outcome == "MISSED" and not detail:
            detail = f"handled {(now - t).total_seconds():.0f} s late (missed_policy {schedule.missed_policy})"
        if not await self._schedules.record_fire(conn, schedule.schedule_id, t, outcome, run_id=run_id,
                                                 detail=detail):
            return  # recorded already (a manual fire at that very instant)
        FIRES.add(1, {"outcome": outcome, "manual": False})
        if outcome == "FIRED":
            LAG.record(max((now - t).total_seconds(), 0.0))
            report.fired.append((schedule.schedule_id, t, run_id or ""))
        elif outcome == "MISSED":
            report.missed.append((schedule.schedule_id, t))
        else:
            report.failed.append((schedule.schedule_id, t, detail))

    async def delete_ended_threads(self) -> int:
        """Purges the threads made for one fire of schedules with on_run_completed=delete,
        once their run has ended and its fire is recorded. The threads picked stay locked
        (their fire rows) until this batch is done, so other replicas pick others; a thread
        that failed to purge waits PURGE_RETRY_SECONDS in this process."""
        if self._pool is None:
            return 0
        clock = time.monotonic()
        self._purge_failed = {t: at for t, at in self._purge_failed.items() if at > clock}
        deleted = 0
        async with self._schedules.ended_fire_threads(DELETE_BATCH, skip=list(self._purge_failed)) as threads:
            for thread_id, schedule_id in threads:
                try:
                    await purge_thread(self._pool, self._js, thread_id, actor=f"schedule:{schedule_id}",
                                       reason="the schedule deletes each fire's thread once its run has ended "
                                              "(on_run_completed=delete)")
                    deleted += 1
                except Exception as exc:  # gone already, a run started on it meanwhile, an outage, a bug
                    (log.info if isinstance(exc, GraphmeshError) else log.warning)(
                        "schedule %s: thread %s not purged (tried again later): %s", schedule_id, thread_id,
                        failure_detail(exc))
                    self._purge_failed[thread_id] = time.monotonic() + PURGE_RETRY_SECONDS
        return deleted

    async def step(self) -> None:
        """One period of the loop: passes until no backlog is left (bounded), then the
        per-fire threads to delete."""
        for _ in range(BACKLOG_PASSES):
            if not (await self.tick()).backlog:
                break
        await self.delete_ended_threads()

    async def run_forever(self, every_seconds: float) -> None:
        log.info("scheduler every %gs (a fire later than %gs counts as missed)", every_seconds,
                 self._missed_after.total_seconds())
        await run_periodically("scheduler", self.step, every_seconds, first_delay=0, logger=log)
