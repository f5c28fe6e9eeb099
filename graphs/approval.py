"""approval_workflow: prepare -> review (interrupt) -> apply_change, or end when rejected.

Input: {"action": "refund" | "deploy", "target": str, "amount"?: number,
        "reason"?: str, "requested_by"?: str}
The reviewer sees the proposed change. The manifest declares `resume: record` for this
approval (docs/resume-values.md), so interrupt() returns the decision record
{"approved": bool, "decision", "edited_value": dict | None, "comment": str, "reviewer": str,
"expired": bool}; an edited value is merged over the proposal before it is applied. A bare
true/false (the plain convention) is read as approve/reject; anything else fails the run
rather than being guessed at.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import Required, TypedDict

ACTIONS = ("refund", "deploy")


class ApprovalInput(TypedDict, total=False):
    action: Required[str]
    target: Required[str]
    amount: float
    reason: str
    requested_by: str


class ApprovalState(ApprovalInput, total=False):
    proposed_change: dict
    approved: bool
    decision: str  # approved | edited | rejected
    reviewer: str
    review_comment: str
    final_change: dict | None
    applied: bool
    receipt: str


def prepare(state: ApprovalState) -> dict:
    action = state["action"]
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    change: dict[str, Any] = {"action": action, "target": state["target"], "reason": state.get("reason", "")}
    if action == "refund":
        change["amount"] = float(state.get("amount", 0.0))
    return {"proposed_change": change, "applied": False, "final_change": None}


def review(state: ApprovalState) -> dict:
    change = state["proposed_change"]
    # Everything before this line re-runs on resume, so the node stays side-effect free.
    decision = interrupt({
        "kind": "approval",
        "node": "apply_change",
        "summary": _describe(change),
        "proposed_change": change,
        "requested_by": state.get("requested_by", ""),
    })
    if isinstance(decision, bool):  # a bare true/false is accepted as a plain approve/reject
        decision = {"approved": decision}
    if not isinstance(decision, dict) or "approved" not in decision:
        raise ValueError(f"resume value must be a decision record (declare resume: record for this node) "
                         f"or true/false, got {decision!r}")
    approved = bool(decision.get("approved"))
    edited = decision.get("edited_value") or None
    final = {**change, **edited} if approved and edited else (change if approved else None)
    return {
        "approved": approved,
        "decision": "rejected" if not approved else ("edited" if edited else "approved"),
        "reviewer": str(decision.get("reviewer", "")),
        "review_comment": str(decision.get("comment", "")),
        "final_change": final,
    }


def apply_change(state: ApprovalState) -> dict:
    # The mutating step: a real graph would call the payments/deploy API here,
    # with the receipt as its idempotency key so a retried step does not repeat it.
    change = state["final_change"]
    digest = hashlib.sha256(json.dumps(change, sort_keys=True).encode()).hexdigest()[:12]
    return {"applied": True, "receipt": f"{change['action']}-{digest}"}


def _describe(change: dict) -> str:
    if change["action"] == "refund":
        return f"Refund {change['amount']:.2f} to {change['target']}"
    return f"Deploy {change['target']}"


def _after_review(state: ApprovalState) -> str:
    return "apply_change" if state.get("approved") else END


graph = StateGraph(ApprovalState, input_schema=ApprovalInput)
graph.add_node("prepare", prepare)
graph.add_node("review", review)
graph.add_node("apply_change", apply_change)
graph.add_edge(START, "prepare")
graph.add_edge("prepare", "review")
graph.add_conditional_edges("review", _after_review, ["apply_change", END])
graph.add_edge("apply_change", END)
