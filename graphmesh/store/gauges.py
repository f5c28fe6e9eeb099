"""The queries behind the gauges graphmesh/pollers.py refreshes: runs in flight per graph
version and status, the versions live workers load, pending approvals per graph."""

from __future__ import annotations

from typing import Any

from graphmesh.store.statuses import IN_PROGRESS, sql_set

RUNS_IN_FLIGHT = f"""
SELECT graph, graph_version, status, count(*) AS n FROM gm_runs
WHERE status IN {sql_set(IN_PROGRESS)} GROUP BY 1, 2, 3
"""
# Versions that live workers load (a worker heartbeats every 2 s).
WORKER_VERSIONS = """
SELECT DISTINCT g->>'graph' AS graph, g->>'graph_version' AS graph_version
FROM gm_workers, jsonb_array_elements(graphs) AS g WHERE last_seen > now() - interval '60 seconds'
"""
PENDING_APPROVALS = "SELECT graph, count(*) AS n FROM gm_approvals WHERE status = 'PENDING' GROUP BY 1"


async def runs_in_flight(conn: Any) -> list[dict[str, Any]]:
    """(graph, graph_version, status, n) of every run not ended."""
    return await (await conn.execute(RUNS_IN_FLIGHT)).fetchall()


async def worker_versions(conn: Any) -> list[dict[str, Any]]:
    """(graph, graph_version) pairs that workers seen in the last minute load."""
    return await (await conn.execute(WORKER_VERSIONS)).fetchall()


async def pending_approvals(conn: Any) -> list[dict[str, Any]]:
    """(graph, n) of approvals still pending."""
    return await (await conn.execute(PENDING_APPROVALS)).fetchall()
