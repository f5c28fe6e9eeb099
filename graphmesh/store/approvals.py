"""Approval requests, decisions and the audit trail, in Postgres.

A decision, its audit record, the run's move back to QUEUED (when it was the last
pending approval) and the bus messages announcing them commit in one transaction, under
the run's row lock, so concurrent or repeated decisions resume a run exactly once.
A decision the interrupt does not allow (graphmesh/resume.py) is refused before any of it.

A RESPOND decision keeps its value in `resume_value` (JSON null included) and the run
resumes with exactly that value for its interrupt; other decisions' values are computed
from the shape (graphmesh/resume.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import psycopg
from psycopg.types.json import Jsonb

from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.jsonvalues import same_json
from graphmesh.resume import RESPOND, RESPONDED, check_decision
from graphmesh.store.audit import record_audit
from graphmesh.store.paging import filters, keyset_page, parse_uuid
from graphmesh.store.records import (
    DECISION_STATUS,
    ApprovalRecord,
    AuditRecord,
    NewApproval,
    RunRecord,
    TransitionResult,
)
from graphmesh.store.runs import RunStore
from graphmesh.store.statuses import RunStatus

# (approval, "requested" | "decided") -> (subject, message id, payload) for the outbox
Announce = Callable[[ApprovalRecord, str], tuple[str, str, bytes]]

INSERT_APPROVAL = """
INSERT INTO gm_approvals (approval_id, run_id, thread_id, graph, graph_version, node, interrupt_id,
    payload, required_role, resume_shape, status, expires_at)
VALUES (%(approval_id)s, %(run_id)s, %(thread_id)s, %(graph)s, %(graph_version)s, %(node)s,
    %(interrupt_id)s, %(payload)s, %(required_role)s, %(resume_shape)s, 'PENDING',
    CASE WHEN %(expires_in)s::float8 IS NULL THEN NULL
         ELSE now() + make_interval(secs => %(expires_in)s::float8) END)
ON CONFLICT (run_id, interrupt_id) DO NOTHING
RETURNING *
"""
SELECT_APPROVAL = "SELECT * FROM gm_approvals WHERE approval_id = %s"
LOCK_RUN = "SELECT * FROM gm_runs WHERE run_id = %s FOR UPDATE"
LOCK_APPROVAL = "SELECT * FROM gm_approvals WHERE approval_id = %s FOR UPDATE"
RECORD_DECISION = """
UPDATE gm_approvals SET status = %(status)s, decision_kind = %(kind)s, edited_value = %(edited)s,
    resume_value = %(responded)s, comment = %(comment)s, reviewer = %(reviewer)s, decided_at = now()
WHERE approval_id = %(approval_id)s AND status = 'PENDING'
RETURNING *
"""
NEXT_EVENT_SEQ = "UPDATE gm_runs SET event_seq = event_seq + 1 WHERE run_id = %s RETURNING event_seq"
COUNT_PENDING = "SELECT count(*) AS n FROM gm_approvals WHERE run_id = %s AND status = 'PENDING'"
# The decisions of this wait: decided, not yet handed to a resume.
CONSUME_DECISIONS = """
UPDATE gm_approvals SET consumed = true
WHERE run_id = %s AND NOT consumed AND status NOT IN ('PENDING', 'CANCELLED')
RETURNING *
"""
INSERT_OUTBOX = "INSERT INTO gm_outbox (subject, msg_id, payload) VALUES (%s, %s, %s) RETURNING id"
SELECT_EXPIRED = """
SELECT approval_id FROM gm_approvals WHERE status = 'PENDING' AND expires_at <= now()
ORDER BY expires_at LIMIT %s
"""
CANCEL_OPEN = """
UPDATE gm_approvals SET status = 'CANCELLED', decided_at = now(), comment = %s, reviewer = %s
WHERE run_id = %s AND status = 'PENDING'
RETURNING *
"""
OUTBOX_BATCH = """
SELECT * FROM gm_outbox WHERE created_at < now() - make_interval(secs => %s) ORDER BY id LIMIT %s
"""
OUTBOX_ROWS = "SELECT * FROM gm_outbox WHERE id = ANY(%s) ORDER BY id"
OUTBOX_DONE = "DELETE FROM gm_outbox WHERE id = ANY(%s)"
SELECT_AUDIT = "SELECT * FROM gm_audit"
# gm_audit has no thread column: a thread's records are those of its runs, and the record of
# its purge or expiry (no run; the thread in its details). The runs are looked up once
# (ARRAY(...)), so both sides can use an index.
AUDIT_OF_THREAD = """(run_id = ANY(ARRAY(SELECT run_id FROM gm_runs WHERE thread_id = %s))
    OR (run_id IS NULL AND details->>'thread_id' = %s))"""
# The nodes a run's approved or edited approvals name: the interrupting node, or the node
# the interrupt's payload names (an approval step guarding a mutating node). A decision the
# run's owner made as its owner (audited with "as_owner") is no review: it never counts.
APPROVED_NODES = """
SELECT DISTINCT unnest(ARRAY[a.node, a.payload->>'node']) AS node FROM gm_approvals a
WHERE a.run_id = %s AND a.status IN ('APPROVED', 'EDITED')
  AND NOT EXISTS (SELECT 1 FROM gm_audit d WHERE d.run_id = a.run_id AND d.approval_id = a.approval_id
                  AND d.action = 'approval_decided' AND d.details @> '{"as_owner": true}')
"""
# Approvals of runs `owner` owns (what a submitter sees).
OF_OWNER = "EXISTS (SELECT 1 FROM gm_runs r WHERE r.run_id = gm_approvals.run_id AND r.owner = %s)"


@dataclass(frozen=True)
class DecideResult:
    approval: ApprovalRecord
    # True when this repeated an earlier identical decision: nothing changed.
    replayed: bool
    # Sequence of the run's approval_decided event.
    event_seq: int = 0
    # Set when this was the run's last pending approval: the run is QUEUED again.
    resumed: TransitionResult | None = None
    outbox_ids: tuple[int, ...] = ()


class ApprovalStore:
    def __init__(self, runs: RunStore) -> None:
        self._runs = runs

    @property
    def runs(self) -> RunStore:
        return self._runs

    async def rest_waiting(
        self, run: RunRecord, *, epoch: int, event_seq: int, approvals: list[NewApproval],
        actor: str, announce: Announce,
    ) -> tuple[TransitionResult, list[ApprovalRecord], tuple[int, ...]]:
        """Moves a running run to WAITING_FOR_APPROVAL and records its approval requests."""
        async with self._runs.transaction() as conn:
            result = await self._runs.transition(
                run.run_id, RunStatus.WAITING_FOR_APPROVAL, epoch=epoch, event_seq=event_seq, conn=conn)
            records, outbox = [], []
            for new in approvals:
                row = await (await conn.execute(INSERT_APPROVAL, {
                    "approval_id": new.approval_id, "run_id": run.run_id, "thread_id": run.thread_id,
                    "graph": run.graph, "graph_version": run.versions["graph_version"], "node": new.node,
                    "interrupt_id": new.interrupt_id, "payload": Jsonb(new.payload),
                    "required_role": new.required_role, "resume_shape": new.resume_shape,
                    "expires_in": new.expires_in_seconds,
                })).fetchone()
                if row is None:  # recorded by an earlier execution that crashed afterwards
                    row = await (await conn.execute(SELECT_APPROVAL, (new.approval_id,))).fetchone()
                    records.append(ApprovalRecord.from_row(row))
                    continue
                record = ApprovalRecord.from_row(row)
                records.append(record)
                await self._audit(conn, actor, "approval_requested", record, {"node": new.node,
                                  "required_role": new.required_role})
                outbox.append(await self._outbox(conn, announce(record, "requested")))
        return result, records, tuple(outbox)

    async def decide(
        self, approval_id: str, *, kind: str, edited_value: Any, comment: str, reviewer: str,
        announce: Announce, audit_details: dict[str, Any] | None = None,
    ) -> DecideResult:
        """Records a decision; `edited_value` is the decision's value: the edited object of
        an EDIT, the resume value itself of a RESPOND (any JSON value; None is null). The
        same decision again answers as the first did; any other is FAILED_PRECONDITION.
        `audit_details` join the decision's audit record (e.g. {"as_owner": true})."""
        approval_id = parse_uuid(approval_id, "approval")
        responding = kind == RESPOND
        async with self._runs.transaction() as conn:
            found = await (await conn.execute(SELECT_APPROVAL, (approval_id,))).fetchone()
            if found is None:
                raise NotFound(f"approval '{approval_id}' not found")
            # The run's row lock serialises every decision on the run's approvals.
            run = RunRecord.from_row(await (await conn.execute(LOCK_RUN, (found["run_id"],))).fetchone())
            locked = await (await conn.execute(LOCK_APPROVAL, (approval_id,))).fetchone()
            current = ApprovalRecord.from_row(locked)
            if current.status != "PENDING":
                given = locked["resume_value"] if current.status == RESPONDED else current.edited_value
                if current.decision_kind == kind and same_json(given, edited_value):
                    return DecideResult(current, replayed=True)
                raise _already_decided(current)
            if run.status != RunStatus.WAITING_FOR_APPROVAL:
                raise FailedPrecondition(
                    f"run {run.run_id} is {run.status.value}, not waiting for approval",
                    code="RUN_NOT_WAITING", run_id=run.run_id)
            # Only decisions the interrupt can take, before anything is recorded.
            check_decision(current.resume_shape, current.payload, kind, edited_value, comment)
            row = await (await conn.execute(RECORD_DECISION, {
                "status": RESPONDED if responding else DECISION_STATUS[kind], "kind": kind,
                "edited": Jsonb(edited_value) if edited_value is not None and not responding else None,
                "responded": Jsonb(edited_value) if responding else None,  # JSON null, not SQL NULL
                "comment": comment, "reviewer": reviewer, "approval_id": approval_id,
            })).fetchone()
            if kind != "expire" and row["expires_at"] is not None and row["decided_at"] >= row["expires_at"]:
                raise FailedPrecondition(
                    f"approval {approval_id} expired at {row['expires_at']:%Y-%m-%d %H:%M:%S} UTC",
                    code="APPROVAL_EXPIRED", run_id=run.run_id)
            approval = ApprovalRecord.from_row(row)
            # As an EDIT's edited value, a RESPOND's value is kept whole in the audit record.
            value = {"value": edited_value} if responding else {"edited_value": edited_value}
            await self._audit(conn, reviewer, "approval_decided", approval,
                              {"decision": kind, "comment": comment, **value, **(audit_details or {})})
            seq = (await (await conn.execute(NEXT_EVENT_SEQ, (run.run_id,))).fetchone())["event_seq"]
            outbox = [await self._outbox(conn, announce(approval, "decided"))]
            resumed = None
            if (await (await conn.execute(COUNT_PENDING, (run.run_id,))).fetchone())["n"] == 0:
                decided = await (await conn.execute(CONSUME_DECISIONS, (run.run_id,))).fetchall()
                resumed = await self._runs.transition(
                    run.run_id, RunStatus.QUEUED, epoch=None, conn=conn,
                    resume_with={r["interrupt_id"]: resume_value_of(r) for r in decided})
        return DecideResult(approval, replayed=False, event_seq=seq, resumed=resumed, outbox_ids=tuple(outbox))

    async def cancel_open(self, conn: psycopg.AsyncConnection, run_id: str, *, actor: str, reason: str,
                          announce: Announce) -> tuple[list[ApprovalRecord], tuple[int, ...]]:
        """Closes a run's pending approvals as cancelled, inside the caller's transaction."""
        rows = await (await conn.execute(CANCEL_OPEN, (reason, actor, run_id))).fetchall()
        records, outbox = [ApprovalRecord.from_row(r) for r in rows], []
        for record in records:
            await self._audit(conn, actor, "approval_cancelled", record, {"reason": reason})
            outbox.append(await self._outbox(conn, announce(record, "decided")))
        return records, tuple(outbox)

    async def expired(self, limit: int = 100) -> list[str]:
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(SELECT_EXPIRED, (limit,))).fetchall()
        return [str(r["approval_id"]) for r in rows]

    async def get(self, approval_id: str) -> ApprovalRecord:
        approval_id = parse_uuid(approval_id, "approval")
        async with self._runs.connection() as conn:
            row = await (await conn.execute(SELECT_APPROVAL, (approval_id,))).fetchone()
        if row is None:
            raise NotFound(f"approval '{approval_id}' not found")
        return ApprovalRecord.from_row(row)

    async def list(self, *, statuses: list[str] | None = None, graph: str = "", run_id: str = "",
                   page_size: int = 50, page_token: str = "", graphs: list[str] | None = None,
                   thread_id: str = "", required_role: str = "", reviewer: str = "",
                   created_after: datetime | None = None, created_before: datetime | None = None,
                   owner: str = "") -> tuple[list[ApprovalRecord], str]:
        """A page of approvals, newest first; `graphs` narrows it to what a reviewer covers,
        `owner` to the approvals of that principal's runs (with `graphs`: those of either).
        Created in [created_after, created_before) when given."""
        where, args = filters(("status = ANY(%s)", statuses or None),
                              ("graph = %s", graph), ("run_id = %s", run_id and parse_uuid(run_id, "run")),
                              ("thread_id = %s", thread_id), ("required_role = %s", required_role),
                              ("reviewer = %s", reviewer), ("created_at >= %s", created_after),
                              ("created_at < %s", created_before))
        if owner and graphs is not None:
            where.append(f"(graph = ANY(%s) OR {OF_OWNER})")
            args.extend([graphs, owner])
        elif owner:
            where.append(OF_OWNER)
            args.append(owner)
        elif graphs is not None:
            where.append("graph = ANY(%s)")
            args.append(graphs)
        return await keyset_page(self._runs.connection, "gm_approvals", "approval_id", where, args,
                                 page_size=page_size, page_token=page_token, from_row=ApprovalRecord.from_row)

    async def audit_records(self, *, run_id: str = "", approval_id: str = "", page_size: int = 100,
                            page_token: str = "", actor: str = "", thread_id: str = "",
                            time_after: datetime | None = None, time_before: datetime | None = None,
                            newest_first: bool = False) -> tuple[list[AuditRecord], str]:
        """Oldest first (newest first with `newest_first`); the page token is the last record
        id seen, and the next page continues past it in the same order. Written in
        [time_after, time_before) when given."""
        where, args = [], []
        if run_id:
            where.append("run_id = %s")
            args.append(parse_uuid(run_id, "run"))
        if approval_id:
            where.append("approval_id = %s")
            args.append(parse_uuid(approval_id, "approval"))
        if actor:
            where.append("actor = %s")
            args.append(actor)
        if thread_id:
            where.append(AUDIT_OF_THREAD)
            args.extend([thread_id, thread_id])
        if time_after is not None:
            where.append("time >= %s")
            args.append(time_after)
        if time_before is not None:
            where.append("time < %s")
            args.append(time_before)
        if page_token:
            if not page_token.isdigit():
                raise InvalidArgument("page_token is not a token this service issued")
            where.append("record_id < %s" if newest_first else "record_id > %s")
            args.append(int(page_token))
        sql = SELECT_AUDIT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY record_id DESC LIMIT %s" if newest_first else " ORDER BY record_id LIMIT %s"
        args.append(page_size + 1)
        async with self._runs.connection() as conn:
            rows = await (await conn.execute(sql, args)).fetchall()
        records = [AuditRecord.from_row(r) for r in rows[:page_size]]
        return records, str(records[-1].record_id) if len(rows) > page_size else ""

    async def outbox_batch(self, *, older_than_seconds: float, limit: int = 100) -> list[dict[str, Any]]:
        async with self._runs.connection() as conn:
            return await (await conn.execute(OUTBOX_BATCH, (older_than_seconds, limit))).fetchall()

    async def outbox_rows(self, ids: tuple[int, ...]) -> list[dict[str, Any]]:
        async with self._runs.connection() as conn:
            return await (await conn.execute(OUTBOX_ROWS, (list(ids),))).fetchall()

    async def outbox_done(self, ids: list[int]) -> None:
        async with self._runs.connection() as conn:
            await conn.execute(OUTBOX_DONE, (ids,))

    async def _audit(self, conn, actor: str, action: str, approval: ApprovalRecord, details: dict) -> None:
        await record_audit(conn, actor, action, approval_id=approval.approval_id, run_id=approval.run_id,
                           details=details)

    async def _outbox(self, conn, message: tuple[str, str, bytes]) -> int:
        return (await (await conn.execute(INSERT_OUTBOX, message)).fetchone())["id"]


def resume_value_of(row: dict[str, Any]) -> Any:
    """What a decided approval's interrupt() returns: a RESPOND's stored value as given,
    else the value its shape gives the decision."""
    if row["status"] == RESPONDED:
        return row["resume_value"]
    return ApprovalRecord.from_row(row).resume_value()



async def approved_nodes(conn, run_id: str) -> frozenset[str]:
    """The nodes `run_id`'s approved or edited approvals name (the node policy gate)."""
    rows = await (await conn.execute(APPROVED_NODES, (run_id,))).fetchall()
    return frozenset(r["node"] for r in rows if r["node"])


def _already_decided(approval: ApprovalRecord) -> FailedPrecondition:
    if approval.status == "EXPIRED":
        return FailedPrecondition(f"approval {approval.approval_id} expired at "
                                  f"{approval.decided_at:%Y-%m-%d %H:%M:%S} UTC", code="APPROVAL_EXPIRED",
                                  run_id=approval.run_id)
    if approval.status == "CANCELLED":
        return FailedPrecondition(f"approval {approval.approval_id} was cancelled with its run",
                                  code="APPROVAL_CANCELLED", run_id=approval.run_id)
    return FailedPrecondition(
        f"approval {approval.approval_id} was already decided: {approval.decision_kind} by "
        f"{approval.reviewer}", code="ALREADY_DECIDED", run_id=approval.run_id)
