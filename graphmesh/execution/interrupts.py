"""Turning a graph's interrupts into approval requests, and decisions back into a resume."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from langgraph.types import Command

from graphmesh.resume import choose_shape
from graphmesh.store import NewApproval, RunRecord

log = logging.getLogger(__name__)

# Approval ids derive from (run, interrupt): a re-execution that meets the same interrupt
# again finds the approval it already requested instead of asking twice.
APPROVAL_NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-4f5a-9c7e-2b1d0e9f8a7c")


def approval_id(run_id: str, interrupt_id: str) -> str:
    return str(uuid.uuid5(APPROVAL_NAMESPACE, f"{run_id}/{interrupt_id}"))


def interrupt_fields(interrupt: Any) -> tuple[str, Any]:
    """(id, value); tasks-mode chunks carry interrupts as dicts, state snapshots as objects."""
    if isinstance(interrupt, dict):
        return interrupt["id"], interrupt["value"]
    return interrupt.id, interrupt.value


def approval_requests(spec, run: RunRecord, interrupts: list[tuple[str, Any]]) -> list[NewApproval]:
    requests = []
    for node, interrupt in interrupts:
        interrupt_id, value = interrupt_fields(interrupt)
        policy = _policy(spec, node, value)
        requests.append(NewApproval(
            approval_id=approval_id(run.run_id, interrupt_id),
            node=node,
            interrupt_id=interrupt_id,
            payload=value,
            required_role=policy.role if policy else "",
            expires_in_seconds=policy.approval_timeout_seconds if policy else None,
            resume_shape=_resume_shape(spec, run, node, value),
        ))
    return requests


def _resume_shape(spec, run: RunRecord, node: str, payload: Any) -> str:
    """The first shape a candidate node's policy declares (the interrupting node's, then the
    guarded node's), else one detected from the payload."""
    declared = next((spec.nodes[name].resume for name in _candidates(node, payload)
                     if name in spec.nodes and spec.nodes[name].resume != "auto"), "auto")
    shape = choose_shape(declared, payload)
    if declared not in ("auto", shape):
        log.warning("run %s: node %s declares resume: %s but its interrupt payload is not one; it resumes as %s",
                    run.run_id, node, declared, shape)
    return shape


def _policy(spec, node: str, payload: Any):
    """The node policy that governs an interrupt: the interrupting node's own, or that of
    the node the payload says it guards (an approval step before a mutating node)."""
    policies = [spec.nodes[name] for name in _candidates(node, payload) if name in spec.nodes]
    for policy in policies:
        if policy.requires_approval or policy.role or policy.approval_timeout_seconds:
            return policy
    return policies[0] if policies else None


def _candidates(node: str, payload: Any) -> list[str]:
    """Nodes whose policy may govern an interrupt: the node itself, and the node its payload names."""
    if isinstance(payload, dict) and isinstance(payload.get("node"), str):
        return [node, payload["node"]]
    return [node]


def resume_input(resume_with: dict[str, Any], pending_interrupt_ids: set[str]) -> Command | None:
    """The decisions for the interrupts the checkpoint still waits on, each to its own
    interrupt; None when the checkpoint has already moved past them (a crash after resuming)."""
    values = {k: v for k, v in resume_with.items() if k in pending_interrupt_ids}
    return Command(resume=values) if values else None


def carry_decisions(decided: list[tuple[str, Any]], interrupts: list[tuple[str, Any]]) -> dict[str, Any]:
    """Decisions recorded before the thread's checkpoint was migrated, given to the
    interrupts its nodes raised again, by node and in order: {new interrupt id: value}.
    (A migrated checkpoint is a new checkpoint, so its interrupts have new ids.)"""
    waiting: dict[str, list[Any]] = {}
    for node, value in decided:
        waiting.setdefault(node, []).append(value)
    carried = {}
    for node, interrupt in interrupts:
        if waiting.get(node):
            carried[interrupt_fields(interrupt)[0]] = waiting[node].pop(0)
    return carried
