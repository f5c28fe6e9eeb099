"""Assistants (gm_assistants): a graph with a stored configuration, LangGraph's assistants.

Every declared graph has a system assistant (graphmesh/assistants.py names its id); each api
inserts the missing ones with ON CONFLICT DO NOTHING, so replicas starting together agree.
A system assistant is never changed or deleted through the API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from graphmesh.errors import FailedPrecondition, NotFound
from graphmesh.store.paging import filters
from graphmesh.store.runs import RunStore

log = logging.getLogger(__name__)

# Fields UpdateAssistant may set (its field mask's paths).
EDITABLE = ("graph", "name", "description", "config", "context", "metadata")
JSON_COLUMNS = ("config", "context", "metadata")
SORT_COLUMNS = {"created_at": "created_at", "updated_at": "updated_at", "name": "name", "graph": "graph",
                "assistant_id": "assistant_id"}

INSERT_ASSISTANT = """
INSERT INTO gm_assistants (assistant_id, graph, name, description, config, context, metadata, system, owner)
VALUES (%(assistant_id)s, %(graph)s, %(name)s, %(description)s, %(config)s, %(context)s, %(metadata)s,
    %(system)s, %(owner)s)
ON CONFLICT (assistant_id) DO NOTHING
RETURNING *
"""
SELECT_ASSISTANT = "SELECT * FROM gm_assistants WHERE assistant_id = %s"
SELECT_SYSTEM_ASSISTANT = "SELECT * FROM gm_assistants WHERE graph = %s AND system"
LOCK_ASSISTANT = SELECT_ASSISTANT + " FOR UPDATE"
DELETE_ASSISTANT = "DELETE FROM gm_assistants WHERE assistant_id = %s"
SELECT_ASSISTANTS = "SELECT * FROM gm_assistants"
COUNT_ASSISTANTS = "SELECT count(*) AS n FROM gm_assistants"


@dataclass(frozen=True)
class AssistantRecord:
    assistant_id: str
    graph: str
    name: str
    description: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    system: bool
    owner: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "AssistantRecord":
        return cls(assistant_id=str(row["assistant_id"]), graph=row["graph"], name=row["name"],
                   description=row["description"], config=dict(row["config"] or {}),
                   context=dict(row["context"] or {}), metadata=dict(row["metadata"] or {}),
                   version=row["version"], system=row["system"], owner=row["owner"],
                   created_at=row["created_at"], updated_at=row["updated_at"])


@dataclass(frozen=True)
class AssistantFilter:
    """What ListAssistants and CountAssistants narrow by. `graphs`: the graphs the listing
    may show (the declared ones the caller covers); never None."""

    graphs: list[str]
    graph: str = ""
    metadata: dict[str, Any] | None = None
    name: str = ""

    def where(self) -> tuple[list[str], list[Any]]:
        # ILIKE's wildcards in the caller's text are matched literally.
        pattern = None
        if self.name:
            pattern = "%" + self.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return filters(("graph = ANY(%s)", self.graphs), ("graph = %s", self.graph),
                       ("metadata @> %s", Jsonb(self.metadata) if self.metadata else None),
                       ("name ILIKE %s", pattern))


class AssistantStore:
    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    async def insert_system(self, assistants: list[dict[str, Any]]) -> int:
        """Inserts the system assistants that are missing; returns how many were new. An id
        held by a client's assistant (made before client ids in the system id space were
        refused) is logged as an error and left alone: the graph then has no system
        assistant, and its name resolves to nothing rather than to that assistant."""
        added = 0
        async with self._runs.transaction() as conn:
            for fields in assistants:
                row = await (await conn.execute(INSERT_ASSISTANT, _params({**fields, "system": True,
                                                                           "owner": ""}))).fetchone()
                added += row is not None
                if row is None:
                    held = await (await conn.execute(SELECT_ASSISTANT, (fields["assistant_id"],))).fetchone()
                    if held is not None and (not held["system"] or held["graph"] != fields["graph"]):
                        log.error("graph '%s' has no system assistant: its id %s is held by assistant of graph "
                                  "'%s' (owner '%s', system=%s); delete that row from gm_assistants to give the "
                                  "graph its own", fields["graph"], fields["assistant_id"], held["graph"],
                                  held["owner"], held["system"])
        return added

    async def create(self, fields: dict[str, Any]) -> AssistantRecord | None:
        """The new assistant; None when its id is taken."""
        async with self._runs.connection() as conn:
            row = await (await conn.execute(INSERT_ASSISTANT, _params({**fields, "system": False}))).fetchone()
        return AssistantRecord.from_row(row) if row else None

    async def find(self, assistant_id: str) -> AssistantRecord | None:
        async with self._runs.connection() as conn:
            row = await (await conn.execute(SELECT_ASSISTANT, (assistant_id,))).fetchone()
        return AssistantRecord.from_row(row) if row else None

    async def find_system(self, graph: str) -> AssistantRecord | None:
        """The graph's system assistant (what the graph's name stands for as an assistant id)."""
        async with self._runs.connection() as conn:
            row = await (await conn.execute(SELECT_SYSTEM_ASSISTANT, (graph,))).fetchone()
        return AssistantRecord.from_row(row) if row else None

    async def update(self, assistant_id: str, changes: dict[str, Any], check=None) -> AssistantRecord:
        """Sets `changes` (columns of EDITABLE) and bumps the version, under the row's lock;
        `check(record)` may refuse first. FAILED_PRECONDITION for a system assistant."""
        async with self._runs.transaction() as conn:
            row = await (await conn.execute(LOCK_ASSISTANT, (assistant_id,))).fetchone()
            current = _existing(row, assistant_id)
            if check is not None:
                check(current)
            if not changes:
                return current
            sets = ", ".join(f"{name} = %({name})s" for name in changes)
            values = {k: Jsonb(v) if k in JSON_COLUMNS else v for k, v in changes.items()}
            row = await (await conn.execute(
                f"UPDATE gm_assistants SET {sets}, version = version + 1, updated_at = now() "
                "WHERE assistant_id = %(assistant_id)s RETURNING *", {**values, "assistant_id": assistant_id})
            ).fetchone()
        return AssistantRecord.from_row(row)

    async def delete(self, assistant_id: str, check=None) -> AssistantRecord:
        async with self._runs.transaction() as conn:
            row = await (await conn.execute(LOCK_ASSISTANT, (assistant_id,))).fetchone()
            current = _existing(row, assistant_id)
            if check is not None:
                check(current)
            await conn.execute(DELETE_ASSISTANT, (assistant_id,))
        return current

    async def list(self, where: AssistantFilter, *, sort_by: str = "created_at", ascending: bool = False,
                   limit: int = 10, offset: int = 0) -> list[AssistantRecord]:
        terms, args = where.where()
        direction = "ASC" if ascending else "DESC"
        column = SORT_COLUMNS[sort_by]
        order = f" ORDER BY {column} {direction}" + (
            f", assistant_id {direction}" if column != "assistant_id" else "")
        sql = SELECT_ASSISTANTS + (" WHERE " + " AND ".join(terms) if terms else "") + order + " LIMIT %s OFFSET %s"
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(sql, [*args, limit, offset])).fetchall()
        return [AssistantRecord.from_row(r) for r in rows]

    async def count(self, where: AssistantFilter) -> int:
        terms, args = where.where()
        sql = COUNT_ASSISTANTS + (" WHERE " + " AND ".join(terms) if terms else "")
        async with self._runs.connection() as conn:
            row = await (await conn.execute(sql, args)).fetchone()
        return int(row["n"])


def _existing(row: dict[str, Any] | None, assistant_id: str) -> AssistantRecord:
    if row is None:
        raise NotFound(f"assistant '{assistant_id}' not found", code="ASSISTANT_NOT_FOUND")
    record = AssistantRecord.from_row(row)
    if record.system:
        raise FailedPrecondition(
            f"assistant '{assistant_id}' is graph '{record.graph}''s system assistant, which follows the "
            "manifest and cannot be changed or deleted; create an assistant of your own for the graph",
            code="SYSTEM_ASSISTANT")
    return record


def _params(fields: dict[str, Any]) -> dict[str, Any]:
    return {"assistant_id": fields["assistant_id"], "graph": fields["graph"], "name": fields["name"],
            "description": fields.get("description", ""), "config": Jsonb(fields.get("config") or {}),
            "context": Jsonb(fields.get("context") or {}), "metadata": Jsonb(fields.get("metadata") or {}),
            "system": fields["system"], "owner": fields.get("owner", "")}


__all__ = ["AssistantFilter", "AssistantRecord", "AssistantStore", "EDITABLE"]
