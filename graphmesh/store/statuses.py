"""The seven run statuses and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

# target status -> statuses it may be entered from. RUNNING -> RUNNING is a re-claim
# after the previous holder's lease expired (a crashed worker).
ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL,
         RunStatus.FAILED, RunStatus.CANCELLED}
    ),
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED, RunStatus.RUNNING}),
    RunStatus.PAUSED: frozenset({RunStatus.RUNNING}),
    RunStatus.WAITING_FOR_APPROVAL: frozenset({RunStatus.RUNNING}),
    RunStatus.COMPLETED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset(
        {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL}
    ),
    RunStatus.CANCELLED: frozenset(
        {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL}
    ),
}


# Every other status set is derived from the table, never retyped.
# Not ended: the run holds its thread and LangGraph state may still change.
IN_PROGRESS = frozenset(RunStatus) - TERMINAL
# A claim takes a queued run, or re-claims a RUNNING one whose lease ran out.
CLAIMABLE = ALLOWED_FROM[RunStatus.RUNNING]
# RetryRun: an ended run that may be queued again.
RETRYABLE = ALLOWED_FROM[RunStatus.QUEUED] & TERMINAL
# Cancelled by the api itself, in one transaction: in progress, but no worker holds it.
CANCELLABLE_AT_REST = ALLOWED_FROM[RunStatus.CANCELLED] - {RunStatus.RUNNING}


def allowed_from(target: RunStatus) -> list[str]:
    return sorted(s.value for s in ALLOWED_FROM[target])


def sql_set(statuses) -> str:
    """A status set as an SQL list literal, for SQL built once at import (members of
    RunStatus only, so nothing from a caller is ever quoted here)."""
    return "(" + ", ".join(f"'{RunStatus(s).value}'" for s in sorted(statuses)) + ")"
