"""`command.resume` on an interrupted thread: its pending interrupts are answered through the
review tier (ReviewService.Decide), so every resume is a recorded and audited decision like
any other. A value that is exactly what a decision resumes with in the approval's resume
shape (plain `true`, a HumanResponse `[{"type": "accept", "args": null}]`, a HITL
`{"decisions": [{"type": "approve"}]}`, ...: graphmesh.resume.canonical_decision) is sent
as that decision (APPROVE, REJECT, EDIT), so that a reviewer can approve a node a policy
guards from a LangGraph client; any other value is a RESPOND, the value exactly as given
(which never counts as an approval for a node policy). Either way the graph receives the
value the client sent.

Which interrupt takes which value is LangGraph's rule: a dict whose keys are interrupt ids
answers each named one; anything else answers the only pending interrupt, and is refused
(422, naming the ids) when several are pending. The run that waited then resumes under its
own id (graphmesh's review tier queues it again) with the stream modes it was created with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc

from graphmesh.resume import canonical_decision
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import thread_service_pb2
from services.gateway.errors import HTTPError
from services.gateway.jsonio import struct_or_none, to_struct, to_value

# LangGraph's interrupt ids are xxh3-128 hex digests.
INTERRUPT_ID = re.compile(r"^[0-9a-f]{32}$")
COMMENT = "resumed through the LangGraph HTTP API (Command(resume=...))"
KINDS = {"approve": rpb.DECISION_KIND_APPROVE, "reject": rpb.DECISION_KIND_REJECT, "edit": rpb.DECISION_KIND_EDIT}


@dataclass(frozen=True)
class Pending:
    approval_id: str
    interrupt_id: str
    run_id: str
    value: Any = None  # the interrupt's payload, as the graph passed it


@dataclass(frozen=True)
class Resumed:
    run_id: str
    approval_ids: frozenset[str]


async def pending_interrupts(threads: Any, metadata: tuple, thread_id: str) -> list[Pending]:
    """The thread's open interrupts that graphmesh turned into approvals."""
    thread = (await threads.GetThread(thread_service_pb2.GetThreadRequest(thread_id=thread_id),
                                      metadata=metadata)).thread
    return [Pending(i.approval_id, i.interrupt_id, i.run_id or thread.active_run_id, struct_or_none(i, "value"))
            for i in thread.interrupts if i.approval_id]


async def resume_shapes(review: Any, metadata: tuple, thread_id: str) -> dict[str, str]:
    """approval id -> resume shape, for the thread's pending approvals (what a reviewer, or
    the submitter that owns the run, may list)."""
    reply = await review.ListApprovals(rpb.ListApprovalsRequest(
        thread_id=thread_id, statuses=[rpb.APPROVAL_STATUS_PENDING], page_size=1000), metadata=metadata)
    return {a.approval_id: a.resume_shape for a in reply.approvals}


def decide_request(target: Pending, shape: str, answer: Any) -> rpb.DecideRequest:
    """The decision that resumes `target`'s interrupt with `answer`: the one the value stands
    for in its shape, else a RESPOND with the value as given."""
    mapped = canonical_decision(shape, target.value, answer, note=COMMENT) if shape else None
    if mapped is not None and mapped[0] == "edit" and _has_integers(mapped[1]):
        mapped = None  # an edited value travels as a Struct (doubles): 3 would reach the graph as 3.0
    if mapped is None:
        return rpb.DecideRequest(approval_id=target.approval_id, kind=rpb.DECISION_KIND_RESPOND,
                                 value=to_value(answer, "command.resume"), comment=COMMENT)
    kind, edited_value, comment = mapped
    request = rpb.DecideRequest(approval_id=target.approval_id, kind=KINDS[kind], comment=comment)
    if kind == "edit":
        request.edited_value.CopyFrom(to_struct(edited_value, "command.resume"))
    return request


def answers(pending: list[Pending], value: Any) -> list[tuple[Pending, Any]]:
    """Which pending interrupt gets which value (LangGraph's rule, above)."""
    by_id = {p.interrupt_id: p for p in pending}
    if isinstance(value, dict) and value and all(isinstance(k, str) and (k in by_id or INTERRUPT_ID.match(k))
                                                 for k in value):
        unknown = sorted(k for k in value if k not in by_id)
        if unknown:
            raise HTTPError(422, f"Unknown or already-consumed interrupt: {', '.join(unknown)} (pending: "
                                 f"{', '.join(sorted(by_id)) or 'none'})")
        return [(by_id[k], v) for k, v in value.items()]
    if len(pending) > 1:
        raise HTTPError(422, "When there are multiple pending interrupts, you must specify the interrupt id when "
                             "resuming: command.resume = {interrupt_id: value, ...}; pending interrupt ids: "
                             + ", ".join(sorted(by_id)))
    return [(pending[0], value)]


def _has_integers(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_integers(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_integers(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool)


async def resume(review: Any, threads: Any, metadata: tuple, thread_id: str, value: Any) -> Resumed | None:
    """Decides the thread's pending interrupts with `value`; None when it has none (the
    caller then treats the thread as not interrupted)."""
    pending = await pending_interrupts(threads, metadata, thread_id)
    if not pending:
        return None
    if review is None:
        raise HTTPError(503, "resuming an interrupt needs the review tier, and this gateway has no review address "
                             "(GRAPHMESH_REVIEW_ADDRESS)")
    runs = {p.run_id for p in pending if p.run_id}
    if not runs:
        raise HTTPError(409, f"thread {thread_id} has interrupts but no run waiting on them")
    if len(runs) > 1:  # one run holds a thread: this would be a store inconsistency
        raise HTTPError(409, f"thread {thread_id} has interrupts of several runs ({', '.join(sorted(runs))})")
    decided: set[str] = set()
    targets = answers(pending, value)
    shapes = await resume_shapes(review, metadata, thread_id)
    for target, answer in targets:
        try:
            await review.Decide(decide_request(target, shapes.get(target.approval_id, ""), answer), metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and decided:
                # Decided meanwhile by someone else (e.g. expired): the others still count.
                continue
            raise
        decided.add(target.approval_id)
    return Resumed(run_id=next(iter(runs)), approval_ids=frozenset(decided))


__all__ = ["Pending", "Resumed", "answers", "decide_request", "pending_interrupts", "resume", "resume_shapes"]
