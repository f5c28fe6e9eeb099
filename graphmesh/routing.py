"""Which graph version a new run uses: a pinned version; else the version its thread has
been running (a thread stays on one version); else a split by rollout weights, stable per
thread (the thread id hashes to a bucket of 100). Operators' weights live in Postgres;
each api replica caches them and reloads on a NATS broadcast (and every few seconds), so
SetRollout and RollbackGraph take effect on every replica without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from graphmesh.bus.control import ROLLOUT_SUBJECT
from graphmesh.loops import run_periodically
from graphmesh.store import RunStore
from graphmesh.store.rollouts import RolloutStore, thread_version

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0


def bucket(thread_id: str) -> int:
    return int(hashlib.sha256(thread_id.encode()).hexdigest()[:8], 16) % 100


def pick(weights: dict[str, int], thread_id: str) -> str:
    """The version whose share of the 100 buckets holds this thread's bucket."""
    point, edge = bucket(thread_id), 0
    for version, weight in weights.items():
        edge += weight
        if point < edge:
            return version
    return max(weights, key=weights.get)  # weights summing under 100: the heaviest


class VersionRouter:
    def __init__(self, registry, rollouts: RolloutStore, store: RunStore) -> None:
        self._registry = registry
        self._rollouts = rollouts
        self._store = store
        self._operator_weights: dict[str, dict[str, int]] = {}

    def weights(self, graph: str) -> dict[str, int]:
        """version -> percent of new threads, in manifest order."""
        versions = [s.version for s in self._registry.versions(graph)]
        chosen = self._operator_weights.get(graph)
        if chosen is None:
            return {s.version: s.weight for s in self._registry.versions(graph)}
        return {v: chosen.get(v, 0) for v in versions}

    async def choose(self, graph: str, thread_id: str, *, pinned: str = "", new_thread: bool = False) -> str:
        if pinned:
            return self._registry.get(graph, pinned).version  # NotFound for an unknown version
        if not new_thread:
            async with self._store.connection() as conn:
                version = await thread_version(conn, thread_id)
            if version is not None and version in {s.version for s in self._registry.versions(graph)}:
                return version
        return pick(self.weights(graph), thread_id)

    async def load(self) -> None:
        """Reloads the operators' weights; raises when Postgres cannot be read."""
        self._operator_weights = {g: r.weights for g, r in (await self._rollouts.all()).items()}

    async def refresh(self, _message=None) -> None:
        """load() for the NATS broadcast and the start: a failure keeps the last known
        weights (the periodic refresh logs it with its traceback and retries)."""
        try:
            await self.load()
        except Exception as exc:  # keep serving the last known weights through an outage
            log.warning("could not refresh rollouts: %s: %s", type(exc).__name__, exc)

    async def start(self, nc) -> asyncio.Task:
        await self.refresh()
        await nc.subscribe(ROLLOUT_SUBJECT, cb=self.refresh)
        return asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        await run_periodically("rollout refresh", self.load, REFRESH_SECONDS, logger=log)
