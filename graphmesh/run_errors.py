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
    action: str  # what an operator does about it


RUN_ERRORS: dict[str, RunErrorCode] = {e.code: e for e in (
    RunErrorCode("GRAPH_ERROR", "the graph raised outside any node's task result", False,
                 "read the worker log's traceback for the run; fix the graph and start a new run"),
    RunErrorCode("NODE_FAILED", "a node raised (after its retry policy)", True,
                 "read the error's node and message (the worker log has the traceback); if the cause was "
                 "passing (an upstream outage), `graphmesh runs retry`; otherwise fix the node"),
    RunErrorCode("GRAPH_LOAD_FAILED", "the graph's module or factory could not be loaded", False,
                 "fix what the message names (manifest entry, import, factory), roll the workers, then retry"),
    RunErrorCode("INCOMPATIBLE_CHECKPOINT", "the thread was checkpointed under a state schema this "
                 "version cannot read and no migration applies (or it failed)", False,
                 "run the thread on the version that wrote it (graph_version pin) or declare a migration"),
    RunErrorCode("NODE_DISABLED", "the run paused before a disabled node (status PAUSED)", True,
                 "`graphmesh graphs enable-node`, then `graphmesh runs resume`"),
    RunErrorCode("POLICY_VIOLATION", "a node's policy (approval, owner role) refused it", False,
                 "have the node approved or the run started by an owner with the role, in a new run"),
    RunErrorCode("STATE_TOO_LARGE", "a step left the state over the graph's max_state_bytes", False,
                 "keep large data out of state, or raise limits.max_state_bytes in the manifest"),
    RunErrorCode("STEP_LIMIT_EXCEEDED", "the run took more steps than the graph's max_steps", False,
                 "look for a loop in the graph's edges, or raise limits.max_steps"),
    RunErrorCode("RUN_TIMEOUT", "the run exceeded the graph's run_timeout_seconds", True,
                 "`graphmesh runs retry` (it continues from its last checkpoint); if it recurs, raise "
                 "limits.run_timeout_seconds or make the slow node faster"),
    RunErrorCode("DEADLINE_EXCEEDED", "a synchronous run outlasted its call's deadline", True,
                 "call again with a longer deadline, or start the run with CreateRun and follow it"),
    RunErrorCode("SYNC_ABANDONED", "the api process running a synchronous run stopped first", True,
                 "call again (the api was restarted or died)"),
    RunErrorCode("CRASH_LOOP", "the run's job was delivered too often without finishing "
                 "(its workers kept dying); it was dead-lettered", False,
                 "find why workers died on it (worker logs, OOM kills), fix that, then `graphmesh runs retry`"),
    RunErrorCode("CANCELLED", "an operator or a multitask strategy cancelled the run", True,
                 "nothing; `graphmesh runs retry` if it should go on after all"),
    RunErrorCode("MULTITASK_CANCEL_FAILED", "a queued run could not cancel the thread's active run "
                 "(multitask_strategy interrupt/rollback) and was withdrawn", True,
                 "send the request again (the message says why the active run could not be cancelled)"),
    RunErrorCode("INTERNAL", "a bug in graphmesh's executor; the service log has the trace", False,
                 "report it with the service log's traceback for the run; a retry may hit the same bug"),
)}


def describe(code: str) -> RunErrorCode | None:
    return RUN_ERRORS.get(code)


def is_retryable(code: str) -> bool:
    entry = RUN_ERRORS.get(code)
    return bool(entry and entry.retryable)
