"""Rollout weights per graph, set by operators, with their history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb

from graphmesh.store.runs import RunStore
from graphmesh.store.statuses import IN_PROGRESS, sql_set

UPSERT = """
INSERT INTO gm_rollouts AS r (graph, weights, previous, updated_by, reason)
VALUES (%(graph)s, %(weights)s, NULL, %(actor)s, %(reason)s)
ON CONFLICT (graph) DO UPDATE SET previous = r.weights, weights = EXCLUDED.weights,
    updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason, updated_at = now()
RETURNING *
"""
HISTORY = """
INSERT INTO gm_rollout_history (graph, action, weights, previous, actor, reason)
VALUES (%s, %s, %s, %s, %s, %s)
"""
# Per version of a graph: how many runs are in each status that is still in flight.
IN_FLIGHT = f"""
SELECT graph_version, status, count(*) AS n FROM gm_runs
WHERE graph = %s AND status IN {sql_set(IN_PROGRESS)}
GROUP BY graph_version, status
"""
SELECT_ROLLOUT = "SELECT * FROM gm_rollouts WHERE graph = %s"
SELECT_ROLLOUTS = "SELECT * FROM gm_rollouts"
# The version a thread has been running (graphmesh/routing.py): its latest run's, unless
# that run was refused for an incompatible checkpoint.
SELECT_THREAD_VERSION = """
SELECT graph_version FROM gm_runs
WHERE thread_id = %s AND coalesce(error_code, '') <> 'INCOMPATIBLE_CHECKPOINT'
ORDER BY created_at DESC LIMIT 1
"""


@dataclass(frozen=True)
class Rollout:
    graph: str
    weights: dict[str, int]
    previous: dict[str, int] | None
    updated_by: str
    reason: str
    updated_at: datetime


class RolloutStore:
    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    async def get(self, graph: str) -> Rollout | None:
        async with self._runs.connection() as conn:
            row = await (await conn.execute(SELECT_ROLLOUT, (graph,))).fetchone()
        return Rollout(**row) if row else None

    async def all(self) -> dict[str, Rollout]:
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(SELECT_ROLLOUTS)).fetchall()
        return {row["graph"]: Rollout(**row) for row in rows}

    async def set(self, graph: str, weights: dict[str, int], *, actor: str, reason: str, action: str,
                  previous: dict[str, int] | None = None) -> Rollout:
        """Stores new weights (the old ones become `previous`) and records who and why."""
        async with self._runs.transaction() as conn:
            row = await (await conn.execute(UPSERT, {"graph": graph, "weights": Jsonb(weights), "actor": actor,
                                                     "reason": reason})).fetchone()
            before = row["previous"] if row["previous"] is not None else previous
            await conn.execute(HISTORY, (graph, action, Jsonb(weights), Jsonb(before), actor, reason))
        return Rollout(**row)

    async def in_flight(self, graph: str) -> dict[str, dict[str, int]]:
        """version -> status -> count of runs still in flight."""
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(IN_FLIGHT, (graph,))).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["graph_version"], {})[row["status"]] = row["n"]
        return counts


async def thread_version(conn, thread_id: str) -> str | None:
    """The graph version `thread_id` has been running; None for a thread with no such run."""
    row = await (await conn.execute(SELECT_THREAD_VERSION, (thread_id,))).fetchone()
    return row["graph_version"] if row else None
