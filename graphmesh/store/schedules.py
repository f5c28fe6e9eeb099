"""Schedules (gm_schedules) and their fires (gm_schedule_fires) in Postgres.

A fire is one scheduled time handled: FIRED (a run was created), MISSED (handled too late,
and the schedule's missed_policy skipped it) or FAILED (the run was refused). Its primary
key (schedule_id, fire_time) makes each scheduled time handled once, however many api
replicas look; the scheduler claims a due schedule with FOR UPDATE SKIP LOCKED and writes
its fires and its next time in that one transaction (graphmesh/schedules/scheduler.py).
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator

from psycopg.types.json import Jsonb

from graphmesh.errors import NotFound
from graphmesh.store.paging import decode_page_token, encode_page_token, filters, keyset_page, parse_uuid
from graphmesh.store.runs import RunStore
from graphmesh.store.statuses import TERMINAL, sql_set

# Columns a client may change: UpdateSchedule's field mask paths (services/api/schedules.py).
EDITABLE = ("graph_version", "cron", "timezone", "input", "metadata", "end_time", "thread_id",
            "multitask_strategy", "on_run_completed", "missed_policy", "catch_up_limit", "webhook", "options")
# What `update` sets: those, and the next time a new cron, time zone or end time gives.
UPDATED_COLUMNS = frozenset(EDITABLE) | {"next_fire_at"}
JSON_COLUMNS = ("input", "metadata", "webhook", "options")

INSERT_SCHEDULE = """
INSERT INTO gm_schedules (schedule_id, owner, owner_roles, owner_graphs, graph, graph_version, cron, timezone,
    input, metadata, end_time, thread_id, multitask_strategy, on_run_completed, missed_policy, catch_up_limit,
    webhook, options, next_fire_at)
VALUES (%(schedule_id)s, %(owner)s, %(owner_roles)s, %(owner_graphs)s, %(graph)s, %(graph_version)s, %(cron)s,
    %(timezone)s, %(input)s, %(metadata)s, %(end_time)s, %(thread_id)s, %(multitask_strategy)s,
    %(on_run_completed)s, %(missed_policy)s, %(catch_up_limit)s, %(webhook)s, %(options)s, %(next_fire_at)s)
RETURNING *
"""
SELECT_SCHEDULE = "SELECT * FROM gm_schedules WHERE schedule_id = %s"
LOCK_SCHEDULE = "SELECT * FROM gm_schedules WHERE schedule_id = %s FOR UPDATE"
DELETE_SCHEDULE = "DELETE FROM gm_schedules WHERE schedule_id = %s"
SET_PAUSED = ("UPDATE gm_schedules SET paused = %s, next_fire_at = %s, updated_at = now() "
              "WHERE schedule_id = %s RETURNING *")
# The most overdue schedule nobody else holds; the caller's transaction keeps it locked.
CLAIM_DUE = """
SELECT * FROM gm_schedules
WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= %s AND NOT (schedule_id = ANY(%s::uuid[]))
ORDER BY next_fire_at LIMIT 1
FOR UPDATE SKIP LOCKED
"""
INSERT_FIRE = """
INSERT INTO gm_schedule_fires (schedule_id, fire_time, outcome, run_id, manual, detail)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (schedule_id, fire_time) DO NOTHING
"""
ADVANCE = """
UPDATE gm_schedules SET next_fire_at = %s, last_fire_at = coalesce(%s, last_fire_at), updated_at = now()
WHERE schedule_id = %s
"""
SELECT_FIRES = "SELECT * FROM gm_schedule_fires WHERE schedule_id = %s"
# Threads made for one fire whose run has ended, of schedules that delete them. Only runs
# whose fire is recorded: a run created by a pass that died before committing its fire row
# is found again through its idempotency key by the next pass, which the purge (deleting
# the run and its key) would turn into a second run. The fire rows are locked, skipping
# those another replica holds, so replicas purge different threads (the purge itself
# never touches gm_schedule_fires, so it does not wait on these locks).
ENDED_FIRE_THREADS = f"""
SELECT r.thread_id, s.schedule_id FROM gm_schedule_fires f
  JOIN gm_runs r ON r.run_id = f.run_id
  JOIN gm_schedules s ON s.schedule_id = f.schedule_id AND s.schedule_id = r.schedule_id
WHERE s.thread_id IS NULL AND s.on_run_completed = 'delete' AND r.status IN {sql_set(TERMINAL)}
  AND NOT (r.thread_id = ANY(%s::text[]))
  AND NOT EXISTS (SELECT 1 FROM gm_runs o WHERE o.thread_id = r.thread_id AND o.status NOT IN {sql_set(TERMINAL)})
  -- Its webhook goes out first: the delivery's body is built from the run, which the purge deletes.
  AND NOT EXISTS (SELECT 1 FROM gm_runs o JOIN gm_webhook_deliveries d ON d.run_id = o.run_id
                  WHERE o.thread_id = r.thread_id AND d.status = 'PENDING')
LIMIT %s
FOR UPDATE OF f SKIP LOCKED
"""
POSTGRES_NOW = "SELECT clock_timestamp() AS now"
# A thread's graph (NULL: no such thread yet) and the owner of its latest run ('' if none).
THREAD_FACTS = """
SELECT t.graph, coalesce((SELECT owner FROM gm_runs WHERE thread_id = t.thread_id ORDER BY created_at DESC LIMIT 1),
                         '') AS owner
FROM gm_threads t WHERE t.thread_id = %s
"""


@dataclass(frozen=True)
class ScheduleRecord:
    schedule_id: str
    owner: str
    graph: str
    cron: str
    timezone: str = "UTC"
    graph_version: str = ""
    owner_roles: list[str] = field(default_factory=list)
    owner_graphs: list[str] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    end_time: datetime | None = None
    thread_id: str | None = None  # None: a new thread per fire
    multitask_strategy: str = "enqueue"
    on_run_completed: str = "keep"
    missed_policy: str = "skip"
    catch_up_limit: int = 10
    webhook: dict[str, Any] | None = None
    # RunOptions as JSON (graphmesh.execution.run_options), given to every fire's run; None: none.
    options: dict[str, Any] | None = None
    paused: bool = False
    next_fire_at: datetime | None = None  # None: ended
    last_fire_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def state(self) -> str:
        """ENDED (no scheduled time left), PAUSED or ACTIVE."""
        if self.next_fire_at is None:
            return "ENDED"
        return "PAUSED" if self.paused else "ACTIVE"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ScheduleRecord":
        return cls(
            schedule_id=str(row["schedule_id"]), owner=row["owner"], graph=row["graph"], cron=row["cron"],
            timezone=row["timezone"], graph_version=row["graph_version"],
            owner_roles=list(row["owner_roles"] or []), owner_graphs=list(row["owner_graphs"] or []),
            input=dict(row["input"] or {}), metadata=dict(row["metadata"] or {}), end_time=row["end_time"],
            thread_id=row["thread_id"], multitask_strategy=row["multitask_strategy"],
            on_run_completed=row["on_run_completed"], missed_policy=row["missed_policy"],
            catch_up_limit=row["catch_up_limit"], webhook=row["webhook"], options=row.get("options"),
            paused=row["paused"],
            next_fire_at=row["next_fire_at"], last_fire_at=row["last_fire_at"], created_at=row["created_at"],
            updated_at=row["updated_at"])


@dataclass(frozen=True)
class FireRecord:
    schedule_id: str
    fire_time: datetime
    outcome: str  # FIRED, MISSED, FAILED
    run_id: str | None = None
    manual: bool = False
    detail: str = ""
    recorded_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "FireRecord":
        return cls(schedule_id=str(row["schedule_id"]), fire_time=row["fire_time"], outcome=row["outcome"],
                   run_id=str(row["run_id"]) if row["run_id"] else None, manual=row["manual"],
                   detail=row["detail"], recorded_at=row["recorded_at"])


def parse_schedule_id(schedule_id: str) -> str:
    return parse_uuid(schedule_id, "schedule")


def _params(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (Jsonb(v) if k in JSON_COLUMNS and v is not None else v) for k, v in values.items()}


class ScheduleStore:
    """Thin async I/O over gm_schedules and gm_schedule_fires (errors mapped as the run store's)."""

    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    def connection(self):
        return self._runs.connection()

    async def now(self, conn=None) -> datetime:
        """Postgres' clock: one clock for every replica, so no host's drift moves a fire.
        On `conn` when given (a caller holding a connection asks on it)."""
        if conn is not None:
            return (await (await conn.execute(POSTGRES_NOW)).fetchone())["now"]
        async with self.connection() as conn:
            return (await (await conn.execute(POSTGRES_NOW)).fetchone())["now"]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection in a transaction: what the block writes commits together, or not at all."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    @staticmethod
    async def insert(conn, values: dict[str, Any]) -> ScheduleRecord:
        """`values`: every INSERT_SCHEDULE column but schedule_id (chosen here); options may
        be left out (none)."""
        params = _params({"options": None, **values, "schedule_id": str(uuid.uuid4())})
        row = await (await conn.execute(INSERT_SCHEDULE, params)).fetchone()
        return ScheduleRecord.from_row(row)

    async def create(self, values: dict[str, Any]) -> ScheduleRecord:
        async with self.connection() as conn:
            return await self.insert(conn, values)

    @staticmethod
    async def thread_facts(conn, thread_id: str) -> tuple[str | None, str]:
        """(the thread's graph, None if there is no such thread yet; its latest run's owner)."""
        row = await (await conn.execute(THREAD_FACTS, (thread_id,))).fetchone()
        return (row["graph"], row["owner"]) if row else (None, "")

    async def get(self, schedule_id: str) -> ScheduleRecord:
        schedule_id = parse_schedule_id(schedule_id)
        async with self.connection() as conn:
            row = await (await conn.execute(SELECT_SCHEDULE, (schedule_id,))).fetchone()
        if row is None:
            raise NotFound(f"schedule '{schedule_id}' not found", code="SCHEDULE_NOT_FOUND")
        return ScheduleRecord.from_row(row)

    @asynccontextmanager
    async def locked(self, schedule_id: str) -> AsyncIterator[tuple[Any, ScheduleRecord]]:
        """The schedule, row-locked for the block's transaction (waits for a scheduler
        handling it, so a change never interleaves with a fire)."""
        schedule_id = parse_schedule_id(schedule_id)
        async with self.connection() as conn, conn.transaction():
            row = await (await conn.execute(LOCK_SCHEDULE, (schedule_id,))).fetchone()
            if row is None:
                raise NotFound(f"schedule '{schedule_id}' not found", code="SCHEDULE_NOT_FOUND")
            yield conn, ScheduleRecord.from_row(row)

    @staticmethod
    async def update(conn, schedule_id: str, changes: dict[str, Any]) -> ScheduleRecord:
        """Sets UPDATED_COLUMNS (inside `locked`'s transaction)."""
        unknown = set(changes) - UPDATED_COLUMNS
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        assignments = ", ".join(f"{column} = %({column})s" for column in changes)  # names from UPDATED_COLUMNS only
        sql = f"UPDATE gm_schedules SET {assignments}, updated_at = now() WHERE schedule_id = %(schedule_id)s " \
              "RETURNING *"
        row = await (await conn.execute(sql, _params({**changes, "schedule_id": schedule_id}))).fetchone()
        return ScheduleRecord.from_row(row)

    @staticmethod
    async def set_paused(conn, schedule_id: str, paused: bool, next_fire_at: datetime | None) -> ScheduleRecord:
        row = await (await conn.execute(SET_PAUSED, (paused, next_fire_at, schedule_id))).fetchone()
        return ScheduleRecord.from_row(row)

    @staticmethod
    async def delete(conn, schedule_id: str) -> None:
        await conn.execute(DELETE_SCHEDULE, (schedule_id,))  # its fires go with it (ON DELETE CASCADE)

    async def list_schedules(self, *, owner: str | None, graphs: list[str] | None, graph: str = "", state: str = "",
                   page_size: int, page_token: str) -> tuple[list[ScheduleRecord], str]:
        """Newest first. `owner`: only its schedules; `graphs`: only schedules of these graphs
        (None: no restriction). `state`: ACTIVE, PAUSED or ENDED."""
        where, args = filters(("owner = %s", owner), ("graph = ANY(%s)", graphs), ("graph = %s", graph))
        where += {"": [], "ENDED": ["next_fire_at IS NULL"], "PAUSED": ["paused AND next_fire_at IS NOT NULL"],
                  "ACTIVE": ["NOT paused AND next_fire_at IS NOT NULL"]}[state]
        return await keyset_page(self.connection, "gm_schedules", "schedule_id", where, args,
                                 page_size=page_size, page_token=page_token, from_row=ScheduleRecord.from_row)

    async def fires(self, schedule_id: str, *, outcome: str = "", page_size: int,
                    page_token: str) -> tuple[list[FireRecord], str]:
        """A schedule's fires, latest scheduled time first; the token is the last one's time."""
        sql, args = SELECT_FIRES, [schedule_id]
        if outcome:
            sql += " AND outcome = %s"
            args.append(outcome)
        if page_token:
            before, _ = decode_page_token(page_token)
            sql += " AND fire_time < %s"
            args.append(before)
        sql += " ORDER BY fire_time DESC LIMIT %s"
        args.append(page_size + 1)
        async with self.connection() as conn:
            rows = await (await conn.execute(sql, args)).fetchall()
        records = [FireRecord.from_row(r) for r in rows[:page_size]]
        token = encode_page_token(records[-1].fire_time, schedule_id) if len(rows) > page_size else ""
        return records, token

    # -- the scheduler's side ------------------------------------------------------------

    @asynccontextmanager
    async def claim_due(self, now: datetime, skip: list[str]) -> AsyncIterator[tuple[Any, ScheduleRecord | None]]:
        """The most overdue schedule due at `now` that no one else holds (and not in `skip`),
        locked for the block's transaction; None when there is none. What the block writes
        commits with the lock's release, or not at all."""
        async with self.connection() as conn, conn.transaction():
            row = await (await conn.execute(CLAIM_DUE, (now, skip))).fetchone()
            yield conn, ScheduleRecord.from_row(row) if row else None

    @staticmethod
    async def record_fire(conn, schedule_id: str, fire_time: datetime, outcome: str, *, run_id: str | None = None,
                          manual: bool = False, detail: str = "") -> bool:
        """False when that scheduled time was already recorded (by anyone)."""
        cur = await conn.execute(INSERT_FIRE, (schedule_id, fire_time, outcome, run_id, manual, detail[:4096]))
        return cur.rowcount == 1

    @staticmethod
    async def advance(conn, schedule_id: str, next_fire_at: datetime | None, last_fire_at: datetime | None) -> None:
        await conn.execute(ADVANCE, (next_fire_at, last_fire_at, schedule_id))

    @asynccontextmanager
    async def ended_fire_threads(self, limit: int, *, skip: list[str] = ()) -> AsyncIterator[list[tuple[str, str]]]:
        """(thread id, schedule id) of per-fire threads to delete: every run on them ended
        and recorded as a fire; none in `skip`. Their fire rows stay locked for the block
        (on this connection: purge them on others), so other replicas pick other threads."""
        async with self.connection() as conn, conn.transaction():
            rows = await (await conn.execute(ENDED_FIRE_THREADS, (list(skip), limit))).fetchall()
            yield list(dict.fromkeys((r["thread_id"], str(r["schedule_id"])) for r in rows))
