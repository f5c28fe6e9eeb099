"""Admission: whether a graph (and an owner) may take one more run, by the manifest's limits."""

from __future__ import annotations

from graphmesh.errors import ResourceExhausted
from graphmesh.manifest import GraphSpec
from graphmesh.store import RunStore


async def admit(store: RunStore, spec: GraphSpec, owner: str) -> None:
    """RESOURCE_EXHAUSTED, naming the limit, when the graph or the owner has too many runs
    in progress (queued, running, waiting, paused) or too many queued."""
    limits = spec.limits
    if not (limits.max_concurrent_runs or limits.max_concurrent_runs_per_owner or limits.max_queued_runs):
        return
    load = await store.load(spec.name, owner)
    for limit, value, count, what in (
            ("max_concurrent_runs", limits.max_concurrent_runs, load["in_progress"],
             f"graph '{spec.name}' has {load['in_progress']} runs in progress"),
            ("max_concurrent_runs_per_owner", limits.max_concurrent_runs_per_owner, load["owner_in_progress"],
             f"{owner} has {load['owner_in_progress']} runs of graph '{spec.name}' in progress"),
            ("max_queued_runs", limits.max_queued_runs, load["queued"],
             f"graph '{spec.name}' has {load['queued']} runs queued")):
        if value and count >= value:
            raise ResourceExhausted(f"{what}, the limit {limit}={value}; retry when some finish", code=limit.upper())
