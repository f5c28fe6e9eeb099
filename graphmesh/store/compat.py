"""The reads of `graphmesh compat check` (graphmesh/compat.py): each thread's latest run
and the metadata of its latest root checkpoint, over a synchronous connection."""

from __future__ import annotations

from typing import Any

LATEST_RUNS = """
SELECT DISTINCT ON (thread_id) run_id::text, thread_id, graph, graph_version, state_schema_version, status
FROM gm_runs ORDER BY thread_id, created_at DESC, run_id DESC
"""
LATEST_CHECKPOINTS = """
SELECT DISTINCT ON (thread_id) thread_id, metadata FROM checkpoints
WHERE checkpoint_ns = '' AND thread_id = ANY(%s) ORDER BY thread_id, checkpoint_id DESC
"""


def latest_runs(conn: Any) -> list[dict[str, Any]]:
    """Each thread's latest run: run_id, thread_id, graph, graph_version, state_schema_version, status."""
    return conn.execute(LATEST_RUNS).fetchall()


def latest_checkpoint_metadata(conn: Any, thread_ids: list[str]) -> dict[str, dict[str, Any]]:
    """thread id -> the metadata of its latest root checkpoint ({} when it has none stored)."""
    return {r["thread_id"]: r["metadata"] or {} for r in conn.execute(LATEST_CHECKPOINTS, (thread_ids,)).fetchall()}
