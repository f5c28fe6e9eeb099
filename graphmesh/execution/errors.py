"""The errors an execution raises to end a run, each with the run error code the executor
records for it (graphmesh/run_errors.py). PolicyViolation (execution/policies.py),
StateTooLarge (execution/saver.py) and MigrationFailed (execution/migration.py) stay next
to the code that raises them."""

from __future__ import annotations

from graphmesh.errors import ExecutionError

__all__ = ["NodePaused", "IncompatibleCheckpoint", "NodeFailed"]


class NodePaused(ExecutionError):
    """The run reached a disabled node; it rests PAUSED before it."""

    run_error_code = "NODE_DISABLED"

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


class IncompatibleCheckpoint(ExecutionError):
    """The thread's state was written by code this run's version cannot read."""

    run_error_code = "INCOMPATIBLE_CHECKPOINT"


class NodeFailed(ExecutionError):
    """A node raised (after its retry policy)."""

    run_error_code = "NODE_FAILED"

    def __init__(self, node: str, error: str) -> None:
        super().__init__(error)
        self.node = node
