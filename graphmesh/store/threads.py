"""Threads as records of their own (gm_threads): created before their first run, with the
client's metadata, and a status derived from their latest run in the same statement that
reads them (never stored, so it cannot drift from the runs).

Status, from the latest run by creation time: QUEUED or RUNNING -> busy; WAITING_FOR_APPROVAL
or PAUSED -> interrupted; FAILED -> error; anything else, or no run -> idle. A thread's
owner is gm_threads.owner, always stored: its creator (CreateThread), or the owner of the
run that created it (CREATE_RUN); threads from before the column took their latest run's
owner in the migration that added gm_threads_owner. Listings narrowed to an owner go
through that index instead of reading every thread's latest run.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator

from psycopg.types.json import Jsonb

from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.store.paging import filters
from graphmesh.store.records import ApprovalRecord
from graphmesh.store.runs import RunStore

# The statuses a thread can report, as LangGraph's HTTP API spells them.
THREAD_STATUSES = ("idle", "busy", "interrupted", "error")
# The most a thread's metadata may hold (as compact JSON), merged or not.
MAX_THREAD_METADATA_BYTES = 64 * 1024
# Sort keys of ListThreads -> the column of the row below.
SORT_COLUMNS = {"created_at": "created_at", "updated_at": "updated_at", "thread_id": "thread_id",
                "status": "status"}

_STATUS = """CASE WHEN lr.status IN ('QUEUED', 'RUNNING') THEN 'busy'
     WHEN lr.status IN ('WAITING_FOR_APPROVAL', 'PAUSED') THEN 'interrupted'
     WHEN lr.status = 'FAILED' THEN 'error' ELSE 'idle' END"""
# One row per thread with its latest run (gm_runs_thread serves the LATERAL lookup). The
# outer query filters and sorts on `th`'s columns; Postgres flattens the subquery, so a
# metadata containment still uses the GIN index on gm_threads.metadata, and an owner filter
# (a plain column of gm_threads) the gm_threads_owner index.
SELECT_THREADS = f"""
SELECT * FROM (
    SELECT t.thread_id, t.graph, t.metadata, t.created_at, t.updated_at, t.active_run_id, t.owner,
        lr.run_id AS latest_run_id, lr.status AS latest_run_status, {_STATUS} AS status
    FROM gm_threads t
    LEFT JOIN LATERAL (SELECT r.run_id, r.status FROM gm_runs r WHERE r.thread_id = t.thread_id
                       ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1) lr ON true
) th"""
COUNT_THREADS = "SELECT count(*) AS n FROM ({select}) counted"
INSERT_THREAD = """
INSERT INTO gm_threads (thread_id, graph, metadata, owner) VALUES (%s, %s, %s, %s)
ON CONFLICT (thread_id) DO NOTHING
RETURNING thread_id
"""
LOCK_THREAD = "SELECT thread_id, graph, metadata, active_run_id FROM gm_threads WHERE thread_id = %s FOR UPDATE"
SET_METADATA = "UPDATE gm_threads SET metadata = %s, updated_at = now() WHERE thread_id = %s"
# A thread that never ran takes the graph its first state update was written with.
SET_GRAPH = "UPDATE gm_threads SET graph = %s, updated_at = now() WHERE thread_id = %s AND graph IS NULL"
TOUCH_THREAD = "UPDATE gm_threads SET updated_at = now() WHERE thread_id = %s"
PENDING_APPROVALS = """
SELECT * FROM gm_approvals WHERE thread_id = ANY(%s) AND status = 'PENDING' ORDER BY created_at, approval_id
"""


@dataclass(frozen=True)
class ThreadRecord:
    thread_id: str
    graph: str  # "" until a run or a state update sets it
    metadata: dict[str, Any]
    owner: str
    status: str  # one of THREAD_STATUSES
    created_at: datetime
    updated_at: datetime
    active_run_id: str = ""
    latest_run_id: str = ""
    latest_run_status: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ThreadRecord":
        return cls(thread_id=row["thread_id"], graph=row["graph"] or "", metadata=dict(row["metadata"] or {}),
                   owner=row["owner"], status=row["status"], created_at=row["created_at"],
                   updated_at=row["updated_at"], active_run_id=str(row["active_run_id"] or ""),
                   latest_run_id=str(row["latest_run_id"] or ""), latest_run_status=row["latest_run_status"] or "")


@dataclass(frozen=True)
class ThreadFilter:
    """What ListThreads and CountThreads narrow by; None / "" / empty: no filter."""

    metadata: dict[str, Any] | None = None
    status: str = ""
    graph: str = ""
    thread_ids: list[str] | None = None
    # Visibility. None: every thread; else the threads `owner` owns, and those of `graphs`.
    owner: str | None = None
    graphs: list[str] | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        terms, args = filters(("metadata @> %s", Jsonb(self.metadata) if self.metadata else None),
                              ("status = %s", self.status), ("graph = %s", self.graph),
                              ("thread_id = ANY(%s)", self.thread_ids or None))
        if self.owner is not None:
            # Its own threads, and (a reviewer or operator of some graphs) those graphs' threads.
            if self.graphs:
                terms.append("(owner = %s OR graph = ANY(%s))")
                args.extend([self.owner, self.graphs])
            else:
                terms.append("owner = %s")
                args.append(self.owner)
        return terms, args


def metadata_size(metadata: dict[str, Any]) -> int:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def check_thread_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    size = metadata_size(metadata)
    if size > MAX_THREAD_METADATA_BYTES:
        raise InvalidArgument(f"thread metadata is {size} bytes as JSON, over the limit of "
                              f"{MAX_THREAD_METADATA_BYTES}", code="METADATA_TOO_LARGE")
    return metadata


def _select(where: list[str]) -> str:
    return SELECT_THREADS + (" WHERE " + " AND ".join(where) if where else "")


class ThreadStore:
    """Thin async I/O over gm_threads (and the runs and approvals a thread's status and
    interrupts come from)."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    @property
    def runs(self) -> RunStore:
        return self._runs

    async def create(self, thread_id: str, *, graph: str | None, metadata: dict[str, Any],
                     owner: str) -> tuple[ThreadRecord, bool]:
        """(the thread, created): created False when the id was already taken."""
        check_thread_metadata(metadata)
        async with self._runs.connection() as conn:
            row = await (await conn.execute(INSERT_THREAD, (thread_id, graph or None, Jsonb(metadata),
                                                            owner))).fetchone()
        return await self.get(thread_id), row is not None

    async def find(self, thread_id: str) -> ThreadRecord | None:
        async with self._runs.connection() as conn:
            row = await (await conn.execute(_select(["thread_id = %s"]), (thread_id,))).fetchone()
        return ThreadRecord.from_row(row) if row else None

    async def get(self, thread_id: str) -> ThreadRecord:
        thread = await self.find(thread_id)
        if thread is None:
            raise NotFound(f"thread '{thread_id}' not found", code="THREAD_NOT_FOUND")
        return thread

    async def update_metadata(self, thread_id: str, metadata: dict[str, Any], *, replace: bool) -> ThreadRecord:
        """Merges `metadata` into the thread's (its top-level keys win, as LangGraph's PATCH),
        or replaces it; the result is checked against the limit under the row's lock."""
        async with self._runs.transaction() as conn:
            row = await (await conn.execute(LOCK_THREAD, (thread_id,))).fetchone()
            if row is None:
                raise NotFound(f"thread '{thread_id}' not found", code="THREAD_NOT_FOUND")
            merged = dict(metadata) if replace else {**(row["metadata"] or {}), **metadata}
            await conn.execute(SET_METADATA, (Jsonb(check_thread_metadata(merged)), thread_id))
        return await self.get(thread_id)

    async def list(self, where: ThreadFilter, *, sort_by: str = "created_at", ascending: bool = False,
                   limit: int = 10, offset: int = 0) -> list[ThreadRecord]:
        """Up to `limit` threads from `offset`, in the order asked (thread id breaks ties)."""
        terms, args = where.where()
        direction = "ASC" if ascending else "DESC"
        column = SORT_COLUMNS[sort_by]
        order = f" ORDER BY {column} {direction}" + (f", thread_id {direction}" if column != "thread_id" else "")
        sql = _select(terms) + order + " LIMIT %s OFFSET %s"
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(sql, [*args, limit, offset])).fetchall()
        return [ThreadRecord.from_row(r) for r in rows]

    async def count(self, where: ThreadFilter) -> int:
        terms, args = where.where()
        async with self._runs.connection() as conn:
            row = await (await conn.execute(COUNT_THREADS.format(select=_select(terms)), args)).fetchone()
        return int(row["n"])

    async def pending_approvals(self, thread_ids: list[str]) -> dict[str, list[ApprovalRecord]]:
        """thread id -> its PENDING approvals, oldest first (the interrupts it waits on)."""
        if not thread_ids:
            return {}
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(PENDING_APPROVALS, (thread_ids,))).fetchall()
        found: dict[str, list[ApprovalRecord]] = {}
        for row in rows:
            found.setdefault(row["thread_id"], []).append(ApprovalRecord.from_row(row))
        return found

    @asynccontextmanager
    async def holding_idle(self, thread_id: str) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
        """The thread's row locked for a state update, in a transaction: (connection, row).
        While it is held no run can take the thread (CreateRun waits on the lock), so the
        update cannot interleave with a run. FAILED_PRECONDITION (THREAD_BUSY) while a run
        holds the thread."""
        async with self._runs.transaction() as conn:
            row = await (await conn.execute(LOCK_THREAD, (thread_id,))).fetchone()
            if row is None:
                raise NotFound(f"thread '{thread_id}' not found", code="THREAD_NOT_FOUND")
            if row["active_run_id"] is not None:
                active = str(row["active_run_id"])
                raise FailedPrecondition(
                    f"thread '{thread_id}' is busy with run {active}; its state can be updated once the run "
                    "has ended (or been cancelled)", code="THREAD_BUSY", run_id=active)
            yield conn, row

    @staticmethod
    async def set_graph(conn: Any, thread_id: str, graph: str) -> None:
        """Gives a thread that has none its graph (inside holding_idle's transaction)."""
        await conn.execute(SET_GRAPH, (graph, thread_id))

    @staticmethod
    async def touch(conn: Any, thread_id: str) -> None:
        await conn.execute(TOUCH_THREAD, (thread_id,))


def check_new_thread_id(thread_id: str) -> str:
    """A thread id as CreateThread takes it: any non-empty text (ids are length-checked by
    the request validation, as every id is)."""
    if thread_id != thread_id.strip():
        raise InvalidArgument("thread_id must not start or end with whitespace", code="INVALID_THREAD_ID")
    return thread_id


__all__ = ["MAX_THREAD_METADATA_BYTES", "THREAD_STATUSES", "ThreadFilter", "ThreadRecord", "ThreadStore",
           "check_new_thread_id", "check_thread_metadata"]
