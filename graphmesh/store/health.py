"""The probe graphmesh/health.py runs every second to tell whether Postgres answers."""

from __future__ import annotations

from typing import Any

PING = "SELECT 1"


async def ping(conn: Any) -> None:
    """Raises unless Postgres answers a trivial query on `conn`."""
    await conn.execute(PING)
