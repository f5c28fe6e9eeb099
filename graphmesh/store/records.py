"""Plain domain records the run store returns; services translate them to protos."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from graphmesh import resume
from graphmesh.store.statuses import RunStatus

VERSION_FIELDS = (
    "graph_version",
    "prompt_version",
    "model_route",
    "tool_version",
    "state_schema_version",
)


@dataclass(frozen=True)
class RunError:
    code: str
    message: str
    node: str = ""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    thread_id: str
    graph: str
    versions: dict[str, str]
    status: RunStatus
    attempt: int
    error: RunError | None
    previous_errors: list[RunError]
    owner: str
    idempotency_key: str
    metadata: dict[str, str]
    input: Any
    multitask_strategy: str
    sync: bool
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    lease_owner: str | None = None
    lease_epoch: int = 0
    event_seq: int = 0
    # interrupt id -> value the next execution resumes the graph with (after approvals).
    resume_with: dict[str, Any] | None = None
    # Set when an operator asked to cancel this run while a worker held it.
    cancel_reason: str | None = None
    cancel_action: str | None = None
    # Claims since the run last rested (1 for an execution that is going normally).
    claims_without_result: int = 0
    # Checkpoint migrations applied while it executed: {time, from_versions, to_versions,
    # from_checkpoint_id, to_checkpoint_id, steps}, oldest first.
    migrations: list[dict[str, Any]] = field(default_factory=list)
    # W3C traceparent of the span that created the run ('' if not traced): the run's trace.
    trace_context: str = ""
    # Roles the owner held when it created the run (node policies may require one).
    owner_roles: list[str] = field(default_factory=list)
    # The schedule and the scheduled time that created the run (None: not scheduled).
    schedule_id: str | None = None
    scheduled_for: datetime | None = None
    # {"url": ..., "on_waiting": bool}: where its status changes are posted (None: nowhere).
    webhook: dict[str, Any] | None = None
    # LangGraph run options as RunOptions JSON (graphmesh/execution/run_options.py); None: none.
    options: dict[str, Any] | None = None
    # No worker starts it before then (options.after_seconds); None: at once.
    run_after: datetime | None = None

    def not_due(self, now: datetime | None = None) -> bool:
        """A delayed run before its time: its job waits for the reconciler (reconcile.py)."""
        return self.run_after is not None and self.run_after > (now or datetime.now(timezone.utc))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunRecord":
        error = None
        if row.get("error_code"):
            error = RunError(row["error_code"], row["error_message"] or "", row["error_node"] or "")
        return cls(
            run_id=str(row["run_id"]),
            thread_id=row["thread_id"],
            graph=row["graph"],
            versions={name: row[name] for name in VERSION_FIELDS},
            status=RunStatus(row["status"]),
            attempt=row["attempt"],
            error=error,
            previous_errors=[RunError(**e) for e in row["previous_errors"] or []],
            owner=row["owner"],
            idempotency_key=row["idempotency_key"] or "",
            metadata=dict(row["metadata"] or {}),
            input=row["input"],
            multitask_strategy=row["multitask_strategy"],
            sync=row["sync"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            lease_owner=row["lease_owner"],
            lease_epoch=row["lease_epoch"],
            event_seq=row["event_seq"],
            resume_with=row.get("resume_with"),
            cancel_reason=row.get("cancel_reason"),
            cancel_action=row.get("cancel_action"),
            claims_without_result=row.get("claims_without_result", 0),
            migrations=list(row.get("migrations") or []),
            trace_context=row.get("trace_context") or "",
            owner_roles=list(row.get("owner_roles") or []),
            schedule_id=str(row["schedule_id"]) if row.get("schedule_id") else None,
            scheduled_for=row.get("scheduled_for"),
            webhook=row.get("webhook"),
            options=row.get("options"),
            run_after=row.get("run_after"),
        )


@dataclass(frozen=True)
class NewRun:
    """What CreateRun asks the store to record."""

    graph: str
    versions: dict[str, str]
    thread_id: str
    input: Any
    owner: str = ""
    idempotency_key: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    multitask_strategy: str = "reject"
    sync: bool = False
    trace_context: str = ""  # the creating span's traceparent
    owner_roles: list[str] = field(default_factory=list)
    # What the request asked for, field -> digest (request_fingerprint), so that a reused
    # idempotency key with a different request is told apart from a retry.
    fingerprint: dict[str, str] = field(default_factory=dict)
    schedule_id: str | None = None
    scheduled_for: datetime | None = None
    webhook: dict[str, Any] | None = None
    # RunOptions JSON (None: none); `input` None continues the thread from its checkpoint.
    options: dict[str, Any] | None = None
    # Seconds from creation (on Postgres' clock) before a worker may start it; 0: at once.
    after_seconds: int = 0


@dataclass(frozen=True)
class CreateResult:
    run: RunRecord
    # False when an idempotency key matched an earlier run.
    created: bool
    # True when the run holds its thread and must be published to the work queue now.
    dispatch: bool


@dataclass(frozen=True)
class Claim:
    """A worker's fenced hold on a run."""

    run: RunRecord
    epoch: int
    # The sequence number of the RUNNING status event this claim emits.
    event_seq: int
    previous_status: RunStatus
    # True when an earlier execution of this run already started (a crash or hand-back).
    resumed: bool


@dataclass(frozen=True)
class TransitionResult:
    run: RunRecord
    # The next enqueued run on the thread, now holding it; publish its job.
    next_run: RunRecord | None = None


APPROVAL_STATUSES = ("PENDING", "APPROVED", "REJECTED", "EDITED", "EXPIRED", "CANCELLED")
# decision kind -> the approval status it leads to
DECISION_STATUS = {"approve": "APPROVED", "reject": "REJECTED", "edit": "EDITED", "expire": "EXPIRED",
                   "respond": "RESPONDED"}


@dataclass(frozen=True)
class NewApproval:
    """An interrupt the worker turns into an approval request."""

    approval_id: str
    node: str
    interrupt_id: str
    payload: Any
    required_role: str = ""
    expires_in_seconds: float | None = None
    # What interrupt() will return once decided (graphmesh/resume.py).
    resume_shape: str = resume.PLAIN


@dataclass(frozen=True)
class ApprovalRecord:
    approval_id: str
    run_id: str
    thread_id: str
    graph: str
    graph_version: str
    node: str
    interrupt_id: str
    payload: Any
    required_role: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    decision_kind: str | None
    edited_value: Any
    comment: str
    reviewer: str
    decided_at: datetime | None
    # Approvals requested before shapes existed resume with the decision record, as then.
    resume_shape: str = resume.RECORD
    # A RESPOND decision's value, as given (None: JSON null, or not a RESPOND).
    responded_value: Any = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ApprovalRecord":
        return cls(
            approval_id=str(row["approval_id"]),
            run_id=str(row["run_id"]),
            thread_id=row["thread_id"],
            graph=row["graph"],
            graph_version=row["graph_version"],
            node=row["node"],
            interrupt_id=row["interrupt_id"],
            payload=row["payload"],
            required_role=row["required_role"],
            status=row["status"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            decision_kind=row["decision_kind"],
            edited_value=row["edited_value"],
            comment=row["comment"] or "",
            reviewer=row["reviewer"] or "",
            decided_at=row["decided_at"],
            resume_shape=row.get("resume_shape") or resume.RECORD,
            responded_value=row.get("resume_value"),
        )

    def resume_value(self) -> Any:
        """What the graph's interrupt() returns once this approval is decided."""
        return resume.resume_value(
            self.resume_shape, self.payload, status=self.status, decision_kind=self.decision_kind,
            edited_value=self.edited_value, comment=self.comment, reviewer=self.reviewer,
            responded=self.responded_value)


@dataclass(frozen=True)
class AuditRecord:
    record_id: int
    time: datetime
    actor: str
    action: str
    approval_id: str
    run_id: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "AuditRecord":
        return cls(
            record_id=row["record_id"],
            time=row["time"],
            actor=row["actor"],
            action=row["action"],
            approval_id=str(row["approval_id"] or ""),
            run_id=str(row["run_id"] or ""),
            details=row["details"] or {},
        )
