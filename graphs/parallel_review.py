"""parallel_review: two reviews in parallel branches, each an interrupt of its own.

Input: {"request": str, "amount"?: number}. `budget_review` and `legal_review` run in the
same step and each call interrupt(), so one run waits on two approvals at once; the run
resumes when both are decided, each decision going to its own interrupt. `finalize`
approves the request only if both reviewers approved. Both nodes declare `resume: record`
(docs/resume-values.md): interrupt() returns the decision record, whose reviewer and
comment each branch keeps; a bare true/false is accepted too.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import Required, TypedDict


class ParallelInput(TypedDict, total=False):
    request: Required[str]
    amount: float


class ParallelState(ParallelInput, total=False):
    budget: dict
    legal: dict
    outcome: str


def _review(check: str, state: ParallelState) -> dict:
    decision = interrupt({"kind": "approval", "check": check, "request": state["request"],
                          "amount": state.get("amount", 0.0)})
    if isinstance(decision, bool):
        decision = {"approved": decision}
    if not isinstance(decision, dict) or "approved" not in decision:
        raise ValueError(f"resume value must be a decision record (declare resume: record) or true/false, "
                         f"got {decision!r}")
    return {check: {"approved": bool(decision.get("approved")), "reviewer": str(decision.get("reviewer", "")),
                    "comment": str(decision.get("comment", ""))}}


def budget_review(state: ParallelState) -> dict:
    return _review("budget", state)


def legal_review(state: ParallelState) -> dict:
    return _review("legal", state)


def finalize(state: ParallelState) -> dict:
    both = state["budget"]["approved"] and state["legal"]["approved"]
    return {"outcome": "approved" if both else "rejected"}


graph = StateGraph(ParallelState, input_schema=ParallelInput)
graph.add_node("budget_review", budget_review)
graph.add_node("legal_review", legal_review)
graph.add_node("finalize", finalize)
graph.add_edge(START, "budget_review")
graph.add_edge(START, "legal_review")
graph.add_edge(["budget_review", "legal_review"], "finalize")
graph.add_edge("finalize", END)
