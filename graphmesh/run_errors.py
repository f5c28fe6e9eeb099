"""Every code a run's error can carry (RunError.code), what it means and whether retrying
the run unchanged (`graphmesh runs retry`) can succeed. docs/errors.md is this table for
operators; tests/unit/test_run_errors.py keeps the two and the code in step."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunErrorCode", "RUN_ERRORS", "describe", "is_retryable"]


@dataclass(frozen=True)
class RunErrorCode:
    code: str
    meaning: str
    retryable: bool  # a retry of the same run, with nothing changed, may succeed


RUN_ERRORS: dict[str, RunErrorCode] = {e.code: e for e in (
    RunErrorCode("GRAPH_ERROR", "the graph raised outside any node's task result", False),
    RunErrorCode("NODE_FAILED", "a node raised (after its retry policy)", True),
    RunErrorCode("GRAPH_LOAD_FAILED", "the graph's module or factory could not be loaded", False),
    RunErrorCode("INCOMPATIBLE_CHECKPOINT", "the thread was checkpointed under a state schema this "
                 "version cannot read and no migration applies (or it failed)", False),
    RunErrorCode("NODE_DISABLED", "the run paused before a disabled node (status PAUSED)", True),
    RunErrorCode("POLICY_VIOLATION", "a node's policy (approval, owner role) refused it", False),
    RunErrorCode("STATE_TOO_LARGE", "a step left the state over the graph's max_state_bytes", False),
    RunErrorCode("STEP_LIMIT_EXCEEDED", "the run took more steps than the graph's max_steps", False),
    RunErrorCode("RUN_TIMEOUT", "the run exceeded the graph's run_timeout_seconds", True),
    RunErrorCode("DEADLINE_EXCEEDED", "a synchronous run outlasted its call's deadline", True),
    RunErrorCode("SYNC_ABANDONED", "the api process running a synchronous run stopped first", True),
    RunErrorCode("CRASH_LOOP", "the run's job was delivered too often without finishing "
                 "(its workers kept dying); it was dead-lettered", False),
    RunErrorCode("CANCELLED", "an operator or a multitask strategy cancelled the run", True),
    RunErrorCode("MULTITASK_CANCEL_FAILED", "a queued run could not cancel the thread's active run "
                 "(multitask_strategy interrupt/rollback) and was withdrawn", True),
    RunErrorCode("INTERNAL", "a bug in graphmesh's executor; the service log has the trace", False),
)}


def describe(code: str) -> RunErrorCode | None:
    return RUN_ERRORS.get(code)


def is_retryable(code: str) -> bool:
    entry = RUN_ERRORS.get(code)
    return bool(entry and entry.retryable)
