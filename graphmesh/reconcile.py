"""Re-publishes work for runs Postgres says should progress but nobody holds.

JetStream is an at-least-once trigger, not the ledger: a job lost between CreateRun's
commit and its publish, or a worker that died after its message was acked, would
otherwise strand a run. Duplicates are harmless: a second message fails to claim. A
queued run that is merely waiting behind a backlog is not re-published: the queue's
oldest undelivered job tells how far the workers have got (bench/backlog.py).

Delayed runs (after_seconds) that nobody published when they came due (the process that
gave them their thread publishes them then, lifecycle.py, unless it stopped first) are
published here, on the first pass after their run_after.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from graphmesh.bus import publish_job, queue_frontier
from graphmesh.execution import RunExecutor
from graphmesh.loops import run_periodically
from graphmesh.store import LeaseLost, RunError, RunStatus, RunStore

log = logging.getLogger(__name__)


# A queued run dispatched less than this before the queue's oldest undelivered job is
# taken to be waiting behind it too: covers the gap between a run's commit and its
# job's publish, and clock skew between Postgres and NATS.
FRONTIER_MARGIN = timedelta(seconds=10)

SYNC_ABANDONED = RunError(
    "SYNC_ABANDONED", "the api process running this synchronous run stopped before it finished")


async def reconcile_forever(
    store: RunStore, js, executor: RunExecutor, *, every_seconds: float, quiet_seconds: float
) -> None:
    # A failed pass (Postgres or NATS away, or a bug) is logged, counted and retried with backoff.
    await run_periodically(
        "reconciler",
        lambda: reconcile_once(store, js, executor, every_seconds=every_seconds, quiet_seconds=quiet_seconds),
        every_seconds, logger=log)


async def reconcile_once(store: RunStore, js, executor: RunExecutor, *, every_seconds: float,
                         quiet_seconds: float) -> None:
    # One id per period: api replicas reconciling together publish one message.
    period = f"reconcile-{int(time.time() // every_seconds)}"
    if adopted := await store.adopt_stranded():
        log.warning("%d queued runs found on idle threads; they now hold their threads", adopted)
    republished = []
    for run in await store.due_delayed():
        log.info("publishing delayed run %s (due at %s)", run.run_id, run.run_after)
        await publish_job(js, run, dedup_suffix=period, due=True)
        republished.append(run.run_id)
    if republished:  # published: orphans() sees them as just dispatched
        await store.touch(republished)
        republished = []
    for run in await store.orphans(quiet_seconds=quiet_seconds, queued_before=await _backlog_cutoff(js)):
        if run.sync:
            # Its caller is gone with the api process that ran it; nobody else may run it.
            log.warning("failing abandoned synchronous run %s", run.run_id)
            try:
                await executor.lifecycle.finish(run, None, RunStatus.FAILED, SYNC_ABANDONED)
            except LeaseLost:
                pass
            continue
        log.info("re-publishing run %s (%s, no live holder)", run.run_id, run.status.value)
        await publish_job(js, run, dedup_suffix=period, due=True)
        republished.append(run.run_id)
    if republished:  # one message per quiet period, not one per pass, while they wait
        await store.touch(republished)


async def _backlog_cutoff(js) -> datetime | None:
    """Queued runs dispatched after this are waiting in the queue's backlog, not lost:
    re-publishing them would only add duplicates for the workers to discard (a deep
    backlog would otherwise get `limit` duplicates every pass). None: no backlog, or the
    queue could not be asked (every quiet queued run is then re-published, as before)."""
    try:
        frontier = await queue_frontier(js)
    except Exception as exc:
        log.info("could not read the work queue's backlog (%s); re-publishing every quiet queued run", exc)
        return None
    return None if frontier is None else frontier - FRONTIER_MARGIN
