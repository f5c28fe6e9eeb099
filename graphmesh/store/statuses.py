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
# Statuses in which a run holds its thread and LangGraph state may still change.
HOLDS_THREAD = frozenset(
    {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL}
)

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


def allowed_from(target: RunStatus) -> list[str]:
    return sorted(s.value for s in ALLOWED_FROM[target])
