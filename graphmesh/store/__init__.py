"""Postgres run store: the source of truth for runs and threads."""

from graphmesh.store.approvals import ApprovalStore, DecideResult
from graphmesh.store.assistants import AssistantFilter, AssistantRecord, AssistantStore
from graphmesh.store.control import ControlStore, DisabledNode, WorkerInfo, cancel_error
from graphmesh.store.records import (
    ApprovalRecord,
    AuditRecord,
    Claim,
    CreateResult,
    NewApproval,
    NewRun,
    RunError,
    RunRecord,
    TransitionResult,
)
from graphmesh.store.runs import LeaseLost, RunStore
from graphmesh.store.schema import migrate
from graphmesh.store.statuses import TERMINAL, RunStatus
from graphmesh.store.threads import ThreadFilter, ThreadRecord, ThreadStore

__all__ = [
    "ApprovalRecord",
    "ApprovalStore",
    "AssistantFilter",
    "AssistantRecord",
    "AssistantStore",
    "AuditRecord",
    "DecideResult",
    "NewApproval",
    "Claim",
    "ControlStore",
    "DisabledNode",
    "WorkerInfo",
    "cancel_error",
    "CreateResult",
    "LeaseLost",
    "NewRun",
    "RunError",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "TERMINAL",
    "ThreadFilter",
    "ThreadRecord",
    "ThreadStore",
    "TransitionResult",
    "migrate",
]
