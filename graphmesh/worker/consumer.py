"""Pulls run jobs from the shared JetStream consumer and executes up to `capacity` at once.

A job is acked only after its run has rested (completed, failed, waiting, paused, or
handed back); while it runs the message is kept alive with in-progress acks, so a
healthy worker's long run is never delivered twice. Duplicates and stale jobs fail to
claim the run and are acked; a job for a run another worker holds comes back when that
worker's lease lapses. A run whose last `max_deliveries` executions all ended without a
result (each crashed or killed its worker) is failed with CRASH_LOOP and kept as a dead
letter instead of being retried forever; Postgres counts them, so redeliveries that were
only naks (a held lease, an outage) do not.

A job message whose processing fails before it claims its run (a job naming no valid
run, or a bug or an unexpected error on the way to the claim) is redelivered with a
growing delay until it has been delivered `max_job_failures` times; the delivery that
fails at or past that count terminates it (JetStream then delivers it no more), logged
with the error and counted in `graphmesh_jobs_terminated_total`. Nothing is lost that
way: Postgres is the ledger, and the reconciler re-publishes a run that should progress
and that nobody holds. Outages (UNAVAILABLE) only nak and never count toward the limit,
so a job is never terminated because Postgres was briefly away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import FetchTimeoutError

from graphmesh.bus import parse_job
from graphmesh.bus.streams import RUNS_STREAM, WORKER_CONSUMER
from graphmesh.errors import Unavailable
from graphmesh.execution import RunExecutor
from graphmesh.store import Claim, ControlStore, LeaseLost, RunError, RunRecord, RunStatus, RunStore
from graphmesh.telemetry.metrics import JOBS_TERMINATED
from graphmesh.telemetry.tracing import context_from
from graphmesh.v1 import run_pb2
from graphmesh.worker.adoption import adoption_target

log = logging.getLogger(__name__)

# After the drain grace period, how long runs get to reach a step boundary before they
# are cut off (their lease then lapses and they resume elsewhere).
STEP_BOUNDARY_SECONDS = 10.0
# When a job names a version this worker does not load: the range its redelivery is delayed by.
NOT_SERVED_REDELIVERY_SECONDS = (0.5, 3.0)


@dataclass
class ActiveRun:
    run: RunRecord
    started_at: datetime
    task: asyncio.Task


@dataclass
class JobConsumer:
    js: JetStreamContext
    store: RunStore
    executor: RunExecutor
    worker_id: str
    capacity: int
    lease_seconds: float
    max_deliveries: int
    # Deliveries after which a job message that keeps failing before its claim is terminated.
    max_job_failures: int = 5
    active: dict[str, ActiveRun] = field(default_factory=dict)
    draining: bool = False
    # False while Postgres or NATS is unreachable: no run should burn a delivery then.
    dependencies_ok: bool = True
    runs_completed: int = 0
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _loop_task: asyncio.Task | None = None
    _drain_task: asyncio.Task | None = None

    async def start(self) -> asyncio.Task:
        """Starts pulling jobs; returns the pull loop's task, for the host to supervise."""
        self._control = ControlStore(self.store)
        self._psub = await self.js.pull_subscribe_bind(WORKER_CONSUMER, stream=RUNS_STREAM)
        self._loop_task = asyncio.create_task(self._pull_loop())
        return self._loop_task

    async def _pull_loop(self) -> None:
        while not self.draining:
            free = self.capacity - len(self.active)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if not self.dependencies_ok:
                await asyncio.sleep(0.5)
                continue
            try:
                msgs = await self._psub.fetch(free, timeout=1.0)
            except (asyncio.TimeoutError, FetchTimeoutError):
                continue
            except Exception as exc:  # NATS reconnecting: wait, never crash the loop
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    if self.draining:
                        await msg.nak()
                        continue
                    await self._start(msg)
                except Exception:  # one bad message must not stop this worker from consuming
                    log.exception("could not start a job; leaving it for redelivery")
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=5)

    async def _failed_before_claim(self, msg: Msg, job: run_pb2.RunJob | None, exc: Exception) -> None:
        """A delivery that failed before claiming its run: redelivered later, with a growing
        delay, or terminated once the message has been delivered max_job_failures times."""
        deliveries = _deliveries(msg)
        what = f"job message for run {job.run_id!r}" if job is not None and job.run_id else "job message"
        if deliveries >= self.max_job_failures:
            log.error("terminating a %s: delivery %d failed before claiming the run (limit %d): %s: %s. "
                      "JetStream will not deliver it again; a run that exists is re-published from "
                      "Postgres by the reconciler", what, deliveries, self.max_job_failures,
                      type(exc).__name__, exc, exc_info=exc)
            JOBS_TERMINATED.add(1, {"reason": type(exc).__name__})
            with contextlib.suppress(Exception):
                await msg.term()
            return
        delay = min(0.5 * 2 ** max(deliveries - 1, 0), 30.0)
        log.error("%s: delivery %d of at most %d failed before claiming the run; retrying in %gs: %s: %s",
                  what, deliveries, self.max_job_failures, delay, type(exc).__name__, exc,
                  exc_info=exc if deliveries <= 1 else None)
        with contextlib.suppress(Exception):
            await msg.nak(delay=delay)

    async def _start(self, msg: Msg) -> None:
        try:
            job = parse_job(msg.data)
        except DecodeError:
            log.error("dropping a job message that is not a RunJob")
            JOBS_TERMINATED.add(1, {"reason": "DecodeError"})
            await msg.term()
            return
        adopt_as = None
        try:
            if not self.executor.serves(job.graph, job.graph_version):
                adopt_as = await adoption_target(self.store, self._control, self.executor.registry,
                                                 run_id=job.run_id, graph=job.graph, version=job.graph_version)
                if adopt_as is None:
                    # Another worker loads that version; until one does, the run stays queued.
                    # The delay is jittered: JetStream hands a redelivered message to the oldest
                    # waiting pull, and a fixed delay keeps that this worker's (which pulled again
                    # right after its nak), so the job would come back here forever.
                    await msg.nak(delay=random.uniform(*NOT_SERVED_REDELIVERY_SECONDS))
                    return
            claim = await self._claim(job.run_id)
        except Unavailable as exc:
            log.warning("cannot claim run %s: %s", job.run_id, exc)
            await msg.nak(delay=2)
            return
        except Exception as exc:  # never reached the claim: bounded by max_job_failures
            await self._failed_before_claim(msg, job, exc)
            return
        try:
            if isinstance(claim, Claim) and not self.executor.serves(claim.run.graph,
                                                                     claim.run.versions["graph_version"]):
                claim = await self._adopt(claim, adopt_as, msg)
                if claim is None:
                    return
        except Unavailable as exc:
            log.warning("cannot adopt run %s: %s", job.run_id, exc)
            await msg.nak(delay=2)
            return
        if not isinstance(claim, Claim):
            if claim is not None:
                # Held by another worker, maybe a dead one: look again when its lease lapses.
                await msg.nak(delay=claim + 0.5)
            else:
                await msg.ack()  # done, resting, or a duplicate: Postgres decides, not the bus
            return
        # Executions of this run since it last rested that never recorded a result.
        abandoned = claim.run.claims_without_result - 1
        if abandoned >= self.max_deliveries:
            await self._dead_letter(claim, msg, abandoned)
            return
        task = asyncio.create_task(self._execute(claim, msg, context_from(msg.headers, claim.run.trace_context)))
        self.active[job.run_id] = ActiveRun(claim.run, datetime.now(timezone.utc), task)

    async def _adopt(self, claim: Claim, target, msg: Msg) -> Claim | None:
        """Moves a claimed run to a version loaded here (see adoption.py)."""
        run = claim.run
        if target is None:  # the job named another version than the run now has: hand it back
            await self.executor.lifecycle.finish(run, claim.epoch, RunStatus.QUEUED, None)
            await msg.ack()
            return None
        log.warning("run %s: no live worker serves %s@%s; taking it over as @%s (state schema %s -> %s)",
                    run.run_id, run.graph, run.versions["graph_version"], target.version,
                    run.versions["state_schema_version"], target.state_schema_version)
        return dataclasses.replace(claim, run=await self.store.repin(run.run_id, claim.epoch, target.versions()))

    async def _claim(self, run_id: str) -> Claim | float | None:
        """A claim; or the seconds another holder's lease has left; or None: nothing to do."""
        for _ in range(3):
            claim = await self.store.claim(run_id, worker_id=self.worker_id, lease_seconds=self.lease_seconds)
            if claim is not None:
                return claim
            obstacle = await self.store.claim_obstacle(run_id)
            if obstacle != 0.0:
                return obstacle
        return 0.5  # still racing a lapsing lease: try again shortly

    async def _execute(self, claim: Claim, msg: Msg, parent) -> None:
        run_id = claim.run.run_id
        try:
            final = await self.executor.execute(claim, heartbeat=msg.in_progress, parent=parent)
            if final.status is not RunStatus.QUEUED:  # QUEUED: handed back by a drain
                self.runs_completed += 1
            await msg.ack()
        except LeaseLost:
            # Not acked: the message may now be the new holder's, which keeps it alive.
            log.warning("run %s was taken over; dropping this execution", run_id)
        except asyncio.CancelledError:
            # Cut off after the drain deadline: hand it back to resume from its checkpoint.
            await self._hand_back(claim, msg)
        except Exception:
            log.exception("run %s could not be recorded; leaving it for redelivery", run_id)
            await msg.nak(delay=2)
        finally:
            self.active.pop(run_id, None)
            self._slot_freed.set()

    async def _hand_back(self, claim: Claim, msg: Msg) -> None:
        try:
            await self.executor.lifecycle.finish(claim.run, claim.epoch, RunStatus.QUEUED, None)  # re-dispatches it
            await msg.ack()
        except Exception as exc:  # the lease lapses and the message is redelivered anyway
            log.warning("could not hand back run %s: %s", claim.run.run_id, exc)

    async def _dead_letter(self, claim: Claim, msg: Msg, abandoned: int) -> None:
        run = claim.run
        reason = (f"{abandoned} executions in a row ended without a result (limit {self.max_deliveries}): "
                  "the run keeps crashing or killing its worker. Stopped and kept for inspection as a "
                  "dead letter; retry it once the cause is fixed")
        log.error("run %s: %s", run.run_id, reason)
        await self._control.dead_letter(run, deliveries=abandoned, worker_id=self.worker_id, reason=reason)
        await self.executor.lifecycle.finish(run, claim.epoch, RunStatus.FAILED, RunError("CRASH_LOOP", reason))
        await msg.ack()

    def cancel(self, run_id: str, reason: str, action: str) -> None:
        """A cancel request for a run that may be executing here."""
        if self.executor.request_cancel(run_id, reason, action):
            log.info("cancelling run %s: %s", run_id, reason)

    def start_drain(self, grace_seconds: float) -> asyncio.Task:
        """Starts draining once; later calls return the same task."""
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self.drain(grace_seconds))
        return self._drain_task

    async def drain(self, grace_seconds: float) -> None:
        """Takes no new runs, lets active ones finish within the grace period, then asks
        the rest to stop at their next step boundary and hands them back to the queue."""
        self.draining = True
        self._slot_freed.set()
        if self._loop_task:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        pending = {a.task for a in self.active.values()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        if pending:
            self.executor.request_drain()
            _, pending = await asyncio.wait(pending, timeout=STEP_BOUNDARY_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered this message, this delivery included."""
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message (a test double): count this one
        return 1
