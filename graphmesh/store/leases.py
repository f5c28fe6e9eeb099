"""Fencing writes made outside the run store by a run's lease holder (its checkpoints).

A claim increments `gm_runs.lease_epoch`; the holder's writes to the run record already
carry the epoch (runs.py). A write to another table (LangGraph's checkpoints, blobs and
pending writes) is fenced by `hold` in the same transaction as the write, as its last
statement before COMMIT: it locks the run's row FOR SHARE and checks that the run is
still RUNNING under the holder's epoch (and holder). A claim (`FOR UPDATE`), a renewal or
a transition of that row then waits for the write's commit, so either the write commits
before a takeover increments the epoch, or the check sees the new epoch (READ COMMITTED
re-reads a row once its lock is released) and the whole write is rolled back: no
interleaving, however long the holder was paused before or during the write.

The row is locked only from the check to the commit. A holder paused in that window
would make a takeover wait: the check sets `idle_in_transaction_session_timeout` for its
transaction, so Postgres ends that session after about a lease's length and releases the
lock; the paused holder's commit then fails when it wakes, and the takeover goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphmesh.store.runs import LeaseLost

HOLD_LEASE = """
SELECT r.status, r.lease_epoch, r.lease_owner,
    set_config('idle_in_transaction_session_timeout', %(idle_ms)s, true) AS idle_timeout
FROM gm_runs r WHERE r.run_id = %(run_id)s
FOR SHARE
"""


@dataclass(frozen=True)
class LeaseFence:
    """The claim a run's writes are fenced by: its run id and epoch (and holder, if known)."""

    run_id: str
    epoch: int
    owner: str | None = None
    # How long the fenced transaction may sit idle before Postgres ends it (see above).
    idle_seconds: float = 10.0

    def refused(self, row: dict[str, Any] | None) -> str | None:
        """Why the run's row no longer lets this claim write; None when it does."""
        if row is None:
            return "the run no longer exists"
        if row["status"] != "RUNNING":
            return f"the run is {row['status']}"
        if row["lease_epoch"] != self.epoch:
            return f"its lease epoch is {row['lease_epoch']} (another claim), this holder's is {self.epoch}"
        if self.owner is not None and row["lease_owner"] != self.owner:
            return f"its lease is held by {row['lease_owner']}, not {self.owner}"
        return None


async def hold(cur: Any, fence: LeaseFence) -> None:
    """Inside the caller's transaction: locks the run's row FOR SHARE until the commit and
    raises LeaseLost unless `fence` still holds the run."""
    idle_ms = str(max(1000, int(fence.idle_seconds * 1000)))
    await cur.execute(HOLD_LEASE, {"run_id": fence.run_id, "idle_ms": idle_ms})
    row = await cur.fetchone()
    reason = fence.refused(row)
    if reason is not None:
        raise LeaseLost(f"run {fence.run_id}: checkpoint write refused, {reason}", run_id=fence.run_id)
