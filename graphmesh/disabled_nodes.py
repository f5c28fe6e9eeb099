"""A process's live view of disabled nodes, feeding the node guards of graphmesh.guard.

Loaded from Postgres at start, reloaded when the api announces a change on NATS (so a
change reaches every worker within moments) and every few seconds in case an
announcement was missed.
"""

from __future__ import annotations

import asyncio
import logging

from graphmesh.bus.control import on_nodes_changed
from graphmesh.guard import install_check
from graphmesh.loops import run_periodically
from graphmesh.store import ControlStore

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0


class DisabledNodes:
    def __init__(self, control: ControlStore) -> None:
        self._control = control
        self._reasons: dict[tuple[str, str], str] = {}

    def reason(self, graph: str, node: str) -> str | None:
        return self._reasons.get((graph, node))

    async def load(self) -> None:
        """Reloads the view; raises when Postgres cannot be read."""
        rows = await self._control.disabled_nodes()
        self._reasons = {(r.graph, r.node): r.reason for r in rows}

    async def refresh(self, _graph: str = "") -> None:
        """load() for the NATS announcement and the start: a failure keeps the last known
        view (the periodic refresh logs it with its traceback and retries)."""
        try:
            await self.load()
        except Exception as exc:  # keep the last known view through an outage
            log.warning("could not refresh disabled nodes: %s: %s", type(exc).__name__, exc)

    async def start(self, nc) -> asyncio.Task:
        await self.refresh()
        install_check(self.reason)
        await on_nodes_changed(nc, self.refresh)
        return asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        await run_periodically("disabled nodes refresh", self.load, REFRESH_SECONDS, logger=log)
