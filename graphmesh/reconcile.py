"""Re-publishes work for runs Postgres says should progress but nobody holds.

JetStream is an at-least-once trigger, not the ledger: a job lost between CreateRun's
commit and its publish, or a worker that died after its message was acked, would
otherwise strand a run. Duplicates are harmless: a second message fails to claim.
"""

from __future__ import annotations

import logging
import time

from graphmesh.bus import publish_job
from graphmesh.execution import RunExecutor
from graphmesh.loops import run_periodically
from graphmesh.store import LeaseLost, RunError, RunStatus, RunStore

log = logging.getLogger(__name__)


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
    for run in await store.orphans(quiet_seconds=quiet_seconds):
        if run.sync:
            # Its caller is gone with the api process that ran it; nobody else may run it.
            log.warning("failing abandoned synchronous run %s", run.run_id)
            try:
                await executor.lifecycle.finish(run, None, RunStatus.FAILED, SYNC_ABANDONED)
            except LeaseLost:
                pass
            continue
        log.info("re-publishing run %s (%s, no live holder)", run.run_id, run.status.value)
        await publish_job(js, run, dedup_suffix=period)
        republished.append(run.run_id)
    if republished:  # one message per quiet period, not one per pass, while they wait
        await store.touch(republished)
