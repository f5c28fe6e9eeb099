"""Rollout weights per graph, set by operators, with their history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb

from graphmesh.store.runs import RunStore

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
IN_FLIGHT = """
SELECT graph_version, status, count(*) AS n FROM gm_runs
WHERE graph = %s AND status IN ('QUEUED', 'RUNNING', 'WAITING_FOR_APPROVAL', 'PAUSED')
GROUP BY graph_version, status
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
            row = await (await conn.execute("SELECT * FROM gm_rollouts WHERE graph = %s", (graph,))).fetchone()
        return Rollout(**row) if row else None

    async def all(self) -> dict[str, Rollout]:
        async with self._runs.connection() as conn:
            rows = await (await conn.execute("SELECT * FROM gm_rollouts")).fetchall()
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
