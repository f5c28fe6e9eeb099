"""Runs of a version this worker does not load that it may still take over.

A run keeps its graph version while a live worker serves that version. Once none does
(the last old worker is gone, or draining), a worker takes the run if a declared
migration path leads from the run's state schema to a version it loads: the run moves
to that version and its checkpoint is migrated when it executes (execution/migration).
Otherwise the run stays queued, as GetGraph shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphmesh.compat import adoption_choice
from graphmesh.store import ControlStore, RunStore

if TYPE_CHECKING:  # the library never imports graphs/ at run time
    from graphmesh.manifest import GraphSpec

# A worker heartbeats every 2 s; one unseen for this long is gone.
ROSTER_WINDOW_SECONDS = 10.0


async def adoption_target(store: RunStore, control: ControlStore, registry, *, run_id: str, graph: str,
                          version: str) -> GraphSpec | None:
    """The version this worker would run the run under, or None to leave it for others."""
    mine = [s for s in registry.specs() if s.name == graph]
    if not mine:
        return None
    wanted = {"graph": graph, "graph_version": version}
    workers = await control.workers(seen_within_seconds=ROSTER_WINDOW_SECONDS)
    if any(wanted in w.graphs and not w.draining for w in workers):
        return None
    schema = (await store.get_run(run_id)).versions["state_schema_version"]
    return adoption_choice(registry, graph, schema, mine)
