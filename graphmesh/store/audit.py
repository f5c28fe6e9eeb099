"""The audit trail (gm_audit): the one statement that appends a record to it. Approval
requests and decisions (store/approvals.py), a refused node (execution/policies.py) and a
purged thread (retention/purge.py) all record through `record_audit`, inside the
caller's transaction."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

INSERT_AUDIT = """
INSERT INTO gm_audit (actor, action, approval_id, run_id, details)
VALUES (%s, %s, %s, %s, %s)
RETURNING record_id
"""


async def record_audit(conn: Any, actor: str, action: str, *, approval_id: str | None = None,
                       run_id: str | None = None, details: dict[str, Any]) -> int:
    """Appends one audit record on `conn` (in its transaction, if any); returns its id."""
    row = await (await conn.execute(INSERT_AUDIT, (actor, action, approval_id, run_id, Jsonb(details)))).fetchone()
    return row["record_id"] if isinstance(row, dict) else row[0]
