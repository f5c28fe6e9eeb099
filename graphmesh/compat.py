"""Checkpoint compatibility: would a deployment continue, migrate or refuse a stored thread?

The same rules the workers apply (services/worker/adoption.py, execution/executor.py),
as pure functions, so `graphmesh compat check` can review every resumable thread against
a manifest before it is deployed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from graphmesh.manifest import GraphSpec
from graphmesh.store.compat import latest_checkpoint_metadata, latest_runs
from graphmesh.store.statuses import IN_PROGRESS, RunStatus

# Statuses from which a thread can still move on: the ones compat check reviews (in
# progress but not executing now, or failed: RetryRun queues it again).
RESUMABLE = (IN_PROGRESS - {RunStatus.RUNNING}) | {RunStatus.FAILED}


def adoption_choice(registry, graph: str, schema: str, candidates: list[GraphSpec]) -> GraphSpec | None:
    """Of the versions on offer, the one a run at state schema `schema` would move to: one
    reachable by a migration path, preferring the version new runs use."""
    reachable = [s for s in candidates if registry.migration_path(graph, schema, s.state_schema_version) is not None]
    if not reachable:
        return None
    preferred = registry.get(graph)
    return preferred if preferred in reachable else reachable[-1]


@dataclass(frozen=True)
class ThreadCompat:
    thread_id: str
    run_id: str
    status: str
    graph: str
    run_version: str  # the version the run is pinned to
    checkpoint_version: str  # the version that wrote the thread's latest checkpoint ("" if none)
    checkpoint_schema: str
    action: str  # continue | migrate | refuse
    runs_as: str  # the version that would execute it ("" when refused)
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(registry, *, graph: str, run_version: str, run_schema: str,
           checkpoint_version: str, checkpoint_schema: str) -> tuple[str, str, str]:
    """(action, version that would run it, detail) under the registry's versions."""
    try:
        versions = registry.versions(graph)
    except Exception:
        return "refuse", "", f"graph '{graph}' is not in this deployment"
    runs_as = next((s for s in versions if s.version == run_version), None)
    moved = ""
    if runs_as is None:
        runs_as = adoption_choice(registry, graph, run_schema, versions)
        if runs_as is None:
            return "refuse", "", (f"version {run_version} is not deployed and no migration path leads from "
                                  f"state schema {run_schema} to a deployed version (the run would stay queued)")
        moved = f"version {run_version} is not deployed: taken over by {runs_as.version}; "
    written = checkpoint_schema or runs_as.state_schema_version  # no checkpoint yet: nothing to convert
    steps = registry.migration_path(graph, written, runs_as.state_schema_version)
    if steps is None:
        return "refuse", runs_as.version, (
            f"{moved}checkpoint written by {graph}@{checkpoint_version} (state schema {written}); no migration path "
            f"to state schema {runs_as.state_schema_version} of {graph}@{runs_as.version}: INCOMPATIBLE_CHECKPOINT")
    if steps:
        applied = "; ".join(d for step in steps for d in step.spec.describe()) or "schema bump only"
        return "migrate", runs_as.version, f"{moved}state schema {written} -> {runs_as.state_schema_version}: {applied}"
    return "continue", runs_as.version, f"{moved}same state schema {written}".rstrip()


def review(database_url: str, registry) -> list[ThreadCompat]:
    """Every thread whose latest run can still move on, assessed against `registry`."""
    with psycopg.connect(database_url, row_factory=dict_row, connect_timeout=10) as conn:
        runs = [r for r in latest_runs(conn) if r["status"] in RESUMABLE]
        metadata = latest_checkpoint_metadata(conn, [r["thread_id"] for r in runs])
    out = []
    for r in runs:
        meta = metadata.get(r["thread_id"], {})
        checkpoint_version = str(meta.get("graph_version", ""))
        checkpoint_schema = str(meta.get("state_schema_version", ""))
        action, runs_as, detail = assess(registry, graph=r["graph"], run_version=r["graph_version"],
                                         run_schema=r["state_schema_version"],
                                         checkpoint_version=checkpoint_version,
                                         checkpoint_schema=checkpoint_schema)
        out.append(ThreadCompat(r["thread_id"], r["run_id"], r["status"], r["graph"], r["graph_version"],
                                checkpoint_version, checkpoint_schema, action, runs_as, detail))
    return out
