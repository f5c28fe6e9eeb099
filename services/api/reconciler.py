"""Re-publishes work for runs Postgres says should progress but nobody holds.

JetStream is an at-least-once trigger, not the ledger: a job lost between CreateRun's
commit and its publish, or a worker that died after its message was acked, would
otherwise strand a run. Duplicates are harmless: a second message fails to claim.
"""

from __future__ import annotations

import asyncio
import logging
import time

from graphmesh.bus import publish_job
from graphmesh.store import RunStore

log = logging.getLogger(__name__)


async def reconcile_forever(store: RunStore, js, *, every_seconds: float, quiet_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        try:
            orphans = await store.orphans(quiet_seconds=quiet_seconds)
            # One id per period: api replicas reconciling together publish one message.
            period = f"reconcile-{int(time.time() // every_seconds)}"
            for run in orphans:
                log.info("re-publishing run %s (%s, no live holder)", run.run_id, run.status.value)
                await publish_job(js, run, dedup_suffix=period)
        except Exception as exc:  # Postgres or NATS away: try again next period
            log.warning("reconcile pass failed: %s", exc)
