"""Long-term memory: LangGraph's Postgres store (langgraph.store.postgres.AsyncPostgresStore)
over the deployment's database, the same store that graphs get as their `store` and that
StoreService serves.

One store object per process, over the process's pool (graphmesh/db.py makes its
connections as the store wants them: autocommit, dict rows, no prepared statements). Its
tables (`store`, `store_migrations`) are created by `prepare_store`, once per deployment,
from graphmesh/setup.py like the checkpointer's: the library's migrations take no lock and
one of them is CREATE INDEX CONCURRENTLY, which cannot run inside a transaction, so it
cannot share graphmesh's transaction-scoped migration lock; `graphmesh migrate` (and `up`)
runs once, before any service starts.

Time to live: items put without one get Settings.store_default_ttl_minutes (0: none);
reading an item renews it unless the reader asks not to; expired items are never returned,
even before `sweep_forever` deletes them.

    memory = Memory(open_store(pool, settings))
    registry.use_store(memory.store)               # graphs: `store: BaseStore`, get_store(), runtime.store
    host.supervise("store ttl sweep", memory.sweep_forever(settings.store_sweep_minutes))
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from langgraph.store.base import InvalidNamespaceError, Item
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.postgres.base import TTLConfig

from graphmesh.errors import InvalidArgument, NotFound
from graphmesh.loops import run_periodically
from graphmesh.store.runs import postgres_errors_mapped

__all__ = ["Memory", "open_store", "prepare_store", "ttl_config", "MAX_LIMIT", "MAX_TTL_MINUTES"]

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
# A hundred years: Postgres' interval arithmetic is safe far beyond; this catches mistakes.
MAX_TTL_MINUTES = 100 * 365 * 24 * 60.0
# 60 ms. LangGraph writes the interval as f"{minutes * 60} seconds", which Postgres cannot
# read once Python writes it with an exponent (below 1e-4 seconds).
MIN_TTL_MINUTES = 0.001
# LangGraph's filter: a field whose value is an object holds these operators.
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
# ListNamespaces' max_depth goes to Postgres as an integer; deeper than any namespace anyway.
MAX_DEPTH = 2**31 - 1
# LangGraph keeps its own data under this root label (langgraph.store.base).
RESERVED_ROOT = "langgraph"


def ttl_config(settings: Any) -> TTLConfig:
    """The store's time-to-live behaviour from Settings."""
    return TTLConfig(default_ttl=settings.store_default_ttl_minutes or None, refresh_on_read=True,
                     omit_expired=True)


def open_store(conn: Any, settings: Any) -> AsyncPostgresStore:
    """The store over a pool (or one connection); call inside the process's event loop."""
    return AsyncPostgresStore(conn, ttl=ttl_config(settings))


async def prepare_store(conn: psycopg.AsyncConnection) -> None:
    """Creates or migrates the store's tables (idempotent). `conn` must be in autocommit:
    one migration creates an index CONCURRENTLY."""
    await AsyncPostgresStore(conn).setup()


def namespace(labels: Any, field: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    """A namespace path as LangGraph requires it: labels that are non-empty and hold no '.'."""
    path = tuple(labels)
    if not path and not empty_ok:
        raise InvalidArgument(f"{field} must name at least one label", code="INVALID_NAMESPACE")
    for label in path:
        if not label or "." in label:
            raise InvalidArgument(f"{field}: label {label!r} must be non-empty and must not contain '.'",
                                  code="INVALID_NAMESPACE")
    return path


def _key(key: str) -> str:
    if not key:
        raise InvalidArgument("key must not be empty", code="INVALID_KEY")
    return key


def _limit(value: int, default: int, field: str) -> int:
    if value > MAX_LIMIT:
        raise InvalidArgument(f"{field} may be at most {MAX_LIMIT}, not {value}", code="INVALID_LIMIT")
    return value or default


def _check_filter(filter: dict) -> None:
    for field, value in filter.items():
        if isinstance(value, dict) and (unknown := sorted(set(value) - set(FILTER_OPERATORS))):
            raise InvalidArgument(
                f"filter field {field!r}: an object there holds operators ({', '.join(FILTER_OPERATORS)}), not "
                f"{', '.join(map(repr, unknown))}; to match an object value, write {{\"$eq\": {{...}}}}",
                code="INVALID_FILTER")


class Memory:
    """The store's operations as StoreService offers them: checked arguments, graphmesh
    errors (INVALID_ARGUMENT naming the field, NOT_FOUND, UNAVAILABLE when Postgres is away)."""

    def __init__(self, store: AsyncPostgresStore) -> None:
        self.store = store

    async def put(self, labels: Any, key: str, value: dict, *, ttl_minutes: float = 0.0) -> None:
        """Creates or replaces an item; ttl_minutes 0: the deployment's default."""
        path = namespace(labels, "namespace")
        if path[0] == RESERVED_ROOT:
            raise InvalidArgument(f"namespace: the root label '{RESERVED_ROOT}' is LangGraph's own",
                                  code="INVALID_NAMESPACE")
        if not isinstance(value, dict):
            raise InvalidArgument("value is required: a JSON object (DeleteItem removes an item)", code="INVALID_VALUE")
        if ttl_minutes != 0 and not MIN_TTL_MINUTES <= ttl_minutes <= MAX_TTL_MINUTES:
            raise InvalidArgument(f"ttl_minutes must be 0 (the deployment's default) or between {MIN_TTL_MINUTES:g} "
                                  f"and {MAX_TTL_MINUTES:g}, not {ttl_minutes:g}", code="INVALID_TTL")
        extra = {"ttl": ttl_minutes} if ttl_minutes else {}  # else the store's default_ttl
        await self._call(self.store.aput(path, _key(key), value, **extra))

    async def get(self, labels: Any, key: str, *, refresh_ttl: bool = True) -> Item:
        path = namespace(labels, "namespace")
        item = await self._call(self.store.aget(path, _key(key), refresh_ttl=refresh_ttl))
        if item is None:
            raise NotFound(f"no item '{key}' in namespace {list(path)}", code="ITEM_NOT_FOUND")
        return item

    async def delete(self, labels: Any, key: str) -> None:
        """Deleting an item that is not there is not an error (as in LangGraph)."""
        await self._call(self.store.adelete(namespace(labels, "namespace"), _key(key)))

    async def search(self, prefix: Any, *, filter: dict | None = None, limit: int = 0,
                     offset: int = 0) -> list[Item]:
        path = namespace(prefix, "namespace_prefix", empty_ok=True)
        _check_filter(filter or {})
        return await self._call(self.store.asearch(path, filter=filter or None, limit=_limit(limit, 10, "limit"),
                                                   offset=offset))

    async def namespaces(self, *, prefix: Any = (), suffix: Any = (), max_depth: int = 0, limit: int = 0,
                         offset: int = 0) -> list[tuple[str, ...]]:
        return await self._call(self.store.alist_namespaces(
            prefix=namespace(prefix, "prefix", empty_ok=True) or None,
            suffix=namespace(suffix, "suffix", empty_ok=True) or None,
            max_depth=min(max_depth, MAX_DEPTH) or None, limit=_limit(limit, 100, "limit"), offset=offset))

    async def sweep(self) -> int:
        """Deletes expired items now; returns how many."""
        return await self._call(self.store.sweep_ttl())

    async def sweep_forever(self, every_minutes: float) -> None:
        """Sweeps every `every_minutes` until cancelled (every api replica may: a sweep only
        deletes what has expired, so concurrent ones agree)."""
        async def sweep() -> None:
            if deleted := await self.sweep():
                log.info("store: swept %d expired item%s", deleted, "" if deleted == 1 else "s")

        await run_periodically("store ttl sweep", sweep, every_minutes * 60, logger=log)

    @staticmethod
    async def _call(operation):
        try:
            with postgres_errors_mapped("store: Postgres error"):
                return await operation
        except InvalidNamespaceError as exc:  # what our own checks let through, should LangGraph add rules
            raise InvalidArgument(str(exc), code="INVALID_NAMESPACE") from exc
