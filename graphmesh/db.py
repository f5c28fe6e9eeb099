"""The one factory for Postgres connection pools."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


def make_pool(
    database_url: str, *, max_size: int = 20, timeout: float = 5.0, name: str = "graphmesh"
) -> AsyncConnectionPool:
    """A pool whose connections suit both the run store and AsyncPostgresSaver, which
    needs autocommit, dict rows and no server-side prepared statements. Opened by the caller."""
    return AsyncConnectionPool(
        database_url,
        min_size=2,
        max_size=max_size,
        name=name,
        open=False,
        timeout=timeout,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
