"""`command.resume` on an interrupted thread: its pending interrupts are answered through the
review tier (ReviewService.Decide, kind RESPOND, the value exactly as given), so every
resume is a recorded and audited decision like any other.

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

from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import thread_service_pb2
from services.gateway.errors import HTTPError
from services.gateway.jsonio import to_value

# LangGraph's interrupt ids are xxh3-128 hex digests.
INTERRUPT_ID = re.compile(r"^[0-9a-f]{32}$")
COMMENT = "resumed through the LangGraph HTTP API (Command(resume=...))"


@dataclass(frozen=True)
class Pending:
    approval_id: str
    interrupt_id: str
    run_id: str


@dataclass(frozen=True)
class Resumed:
    run_id: str
    approval_ids: frozenset[str]


async def pending_interrupts(threads: Any, metadata: tuple, thread_id: str) -> list[Pending]:
    """The thread's open interrupts that graphmesh turned into approvals."""
    thread = (await threads.GetThread(thread_service_pb2.GetThreadRequest(thread_id=thread_id),
                                      metadata=metadata)).thread
    return [Pending(i.approval_id, i.interrupt_id, i.run_id or thread.active_run_id)
            for i in thread.interrupts if i.approval_id]


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
    for target, answer in answers(pending, value):
        try:
            await review.Decide(rpb.DecideRequest(approval_id=target.approval_id, kind=rpb.DECISION_KIND_RESPOND,
                                                  value=to_value(answer, "command.resume"), comment=COMMENT),
                                metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and decided:
                # Decided meanwhile by someone else (e.g. expired): the others still count.
                continue
            raise
        decided.add(target.approval_id)
    return Resumed(run_id=next(iter(runs)), approval_ids=frozenset(decided))


__all__ = ["Pending", "Resumed", "answers", "pending_interrupts", "resume"]
