"""The retention sweeper loop (run by the api process): every `retention_seconds` (Settings,
GRAPHMESH_RETENTION_SECONDS, 300 by default; 0 switches it off) it enforces each graph's `retention` settings from the
manifest (the most generous across a graph's versions) with graphmesh.retention.Sweeper.

Several api replicas may run it: a Postgres advisory lock lets one sweep at a time.
"""

from __future__ import annotations

import logging

from graphmesh.loops import run_periodically
from graphmesh.retention import Sweeper, retention_by_graph

log = logging.getLogger(__name__)

def make_sweeper(pool, js, registry) -> Sweeper | None:
    """A sweeper for the graphs with any retention setting; None if none has one."""
    # Every graph, settings or not: a span may outlive nothing but the longest trace limit,
    # and only when every graph has one.
    settings = retention_by_graph(registry.specs())
    if not any(r.threads_days or r.checkpoints_keep or r.events_days or r.traces_days or r.reviews_days
               for r in settings.values()):
        return None
    return Sweeper(pool, js, settings)


async def sweep_forever(pool, js, registry, *, every_seconds: float) -> None:
    """Runs until cancelled; a failed sweep is logged and tried again next period."""
    every = every_seconds
    sweeper = make_sweeper(pool, js, registry)
    if not every or sweeper is None:
        log.info("retention sweeper off (%s)", "GRAPHMESH_RETENTION_SECONDS=0" if not every
                 else "no graph has retention settings")
        return
    log.info("retention sweeper every %gs for %s", every, ", ".join(sorted(sweeper.retention)))
    # A failed sweep (Postgres or NATS away, or a bug) is logged, counted and retried.
    await run_periodically("retention sweep", sweeper.sweep, every, logger=log)
