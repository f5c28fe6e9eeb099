"""The run status table (graphmesh/store/statuses.py): every one of the 49 moves between the
seven statuses, written out here by hand, and the sets that CLAIM, RETRY, cancel and the
SQL derive from it. A change to the table must change this file too."""

from __future__ import annotations

import itertools

import pytest

from graphmesh.store.statuses import (
    ALLOWED_FROM,
    CANCELLABLE_AT_REST,
    CLAIMABLE,
    IN_PROGRESS,
    RETRYABLE,
    TERMINAL,
    RunStatus,
    allowed_from,
    sql_set,
)
from graphmesh.v1 import run_pb2

Q, R, P, W, C, F, X = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.WAITING_FOR_APPROVAL,
                       RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)

# (from, to): why the move exists. Every pair not listed is refused.
ALLOWED = {
    (Q, R): "a worker claims a queued run",
    (R, R): "a worker re-claims a run whose holder's lease ran out",
    (R, Q): "a draining worker hands the run back at a step boundary",
    (R, P): "the run reached a disabled node",
    (R, W): "the graph interrupted for approval",
    (R, C): "the run finished",
    (R, F): "the graph failed (or a limit, a policy, a crash loop)",
    (R, X): "its worker cancelled it",
    (P, Q): "ResumeRun",
    (W, Q): "the last open approval was decided or expired",
    (F, Q): "RetryRun",
    (X, Q): "RetryRun",
    (Q, F): "a synchronous run whose api process died before it started (SYNC_ABANDONED)",
    # A verdict on a resting run; allowed by the table, taken by no code path today.
    (P, F): "a paused run failed without resuming",
    (W, F): "a waiting run failed without a decision",
    (Q, X): "CancelRun at rest; a multitask run withdrawn",
    (P, X): "CancelRun at rest",
    (W, X): "CancelRun at rest (its approvals close with it)",
}


def test_seven_statuses_exactly_and_the_proto_agrees():
    assert [s.value for s in RunStatus] == ["QUEUED", "RUNNING", "PAUSED", "WAITING_FOR_APPROVAL",
                                            "COMPLETED", "FAILED", "CANCELLED"]
    proto = {name.removeprefix("RUN_STATUS_") for name in run_pb2.RunStatus.keys()} - {"UNSPECIFIED"}
    assert proto == {s.value for s in RunStatus}


@pytest.mark.parametrize("source, target", list(itertools.product(RunStatus, RunStatus)),
                         ids=lambda s: s.value)
def test_every_move_of_the_table(source, target):
    assert (source in ALLOWED_FROM[target]) == ((source, target) in ALLOWED), ALLOWED.get((source, target))


def test_nothing_leaves_completed_and_ended_runs_only_go_back_to_the_queue():
    assert all(C not in sources for sources in ALLOWED_FROM.values())
    for ended in TERMINAL:
        assert {t for t, sources in ALLOWED_FROM.items() if ended in sources} <= {Q}


def test_derived_sets():
    assert TERMINAL == {C, F, X}
    assert IN_PROGRESS == {Q, R, P, W}
    assert CLAIMABLE == {Q, R}
    assert RETRYABLE == {F, X}
    assert CANCELLABLE_AT_REST == {Q, P, W}
    assert all(s.terminal == (s in TERMINAL) for s in RunStatus)


def test_allowed_from_and_sql_set_render_the_table():
    assert allowed_from(RunStatus.RUNNING) == ["QUEUED", "RUNNING"]
    assert sql_set(TERMINAL) == "('CANCELLED', 'COMPLETED', 'FAILED')"
    with pytest.raises(ValueError):
        sql_set({"COMPLETED'); DROP TABLE gm_runs; --"})
