"""Postgres run store: the source of truth for runs and threads."""

from graphmesh.store.records import Claim, CreateResult, NewRun, RunError, RunRecord, TransitionResult
from graphmesh.store.runs import LeaseLost, RunStore
from graphmesh.store.schema import migrate
from graphmesh.store.statuses import TERMINAL, RunStatus

__all__ = [
    "Claim",
    "CreateResult",
    "LeaseLost",
    "NewRun",
    "RunError",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "TERMINAL",
    "TransitionResult",
    "migrate",
]
