"""ReviewService: approvals for graph interrupts, decisions that resume runs, the audit trail."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format
from opentelemetry import trace

from graphmesh.auth.principals import ALL_GRAPHS, ensure_can_decide, ensure_can_see_approval
from graphmesh.bus.approvals import last_stream_sequence, watch
from graphmesh.errors import InvalidArgument, PermissionDenied
from graphmesh.jsonvalues import from_proto, to_struct
from graphmesh.lifecycle import RunLifecycle
from graphmesh.messages import DECISION_KINDS, approval_to_proto, timestamp
from graphmesh.resume import RESPOND, is_canonical
from graphmesh.rpc.errors import end_stream_for_shutdown
from graphmesh.rpc.principal import caller, principal
from graphmesh.store import ApprovalStore
from graphmesh.store.paging import page_size
from graphmesh.telemetry.metrics import DECISION_LATENCY
from graphmesh.telemetry.tracing import Link, run_span
from graphmesh.v1 import review_service_pb2 as pb
from graphmesh.v1 import review_service_pb2_grpc

log = logging.getLogger(__name__)

APPROVAL_STATUS_NAMES = {
    value: name.removeprefix("APPROVAL_STATUS_") for name, value in pb.ApprovalStatus.items() if value
}


def _time(request, field: str) -> datetime | None:
    """An optional Timestamp field as an aware datetime (None when unset)."""
    if not request.HasField(field):
        return None
    try:
        return getattr(request, field).ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} is not a valid time (years 1 to 9999)") from None


def _time_range(request, after: str, before: str) -> tuple[datetime | None, datetime | None]:
    start, end = _time(request, after), _time(request, before)
    if start is not None and end is not None and start > end:
        raise InvalidArgument(f"{after} ({start.isoformat()}) is later than {before} ({end.isoformat()}): "
                              "no record can match")
    return start, end


def _decision_value(request, kind: str) -> Any:
    """The decision's value: an EDIT's edited_value (an object), a RESPOND's value (any
    JSON, null included), nothing for the others."""
    edited = json_format.MessageToDict(request.edited_value) if request.HasField("edited_value") else None
    if kind == "edit" and edited is None:
        raise InvalidArgument("an EDIT decision needs edited_value")
    if kind != "edit" and edited is not None:
        raise InvalidArgument("edited_value is only for EDIT decisions")
    given = request.HasField("value")
    if kind == RESPOND:
        if not given or request.value.WhichOneof("kind") is None:
            raise InvalidArgument("a RESPOND decision needs value: what interrupt() returns, any JSON value "
                                  "(null_value for null)", code="RESPOND_VALUE_REQUIRED")
        return from_proto(request.value)
    if given:
        raise InvalidArgument("value is only for RESPOND decisions (an EDIT's object is edited_value)",
                              code="VALUE_ONLY_FOR_RESPOND")
    return edited


def _covered(principal) -> list[str] | None:
    """The graphs whose approvals the caller may see (None: all)."""
    return None if principal.covers(ALL_GRAPHS) else sorted(principal.graphs)


def _visible(principal) -> tuple[list[str] | None, str]:
    """(graphs, owner) for ApprovalStore.list: a reviewer sees the approvals of the graphs it
    covers, a submitter those of its own runs (a narrowed reviewer that submits: either)."""
    reviewer, submitter = principal.has("reviewer"), principal.has("submitter")
    if reviewer:
        graphs = _covered(principal)
        return graphs, principal.name if submitter and graphs is not None else ""
    return None, principal.name


class ReviewServicer(review_service_pb2_grpc.ReviewServiceServicer):
    def __init__(self, *, approvals: ApprovalStore, lifecycle: RunLifecycle, js, stopping: asyncio.Event) -> None:
        self._approvals = approvals
        self._lifecycle = lifecycle
        self._js = js
        self._stopping = stopping

    async def ListApprovals(self, request, context):
        statuses = []
        for value in request.statuses:
            if value not in APPROVAL_STATUS_NAMES:
                raise InvalidArgument(f"unknown approval status {value}")
            statuses.append(APPROVAL_STATUS_NAMES[value])
        created_after, created_before = _time_range(request, "created_after", "created_before")
        graphs, owner = _visible(caller())
        records, token = await self._approvals.list(
            statuses=statuses, graph=request.graph, run_id=request.run_id,
            page_size=page_size(request.page_size, 50), page_token=request.page_token,
            graphs=graphs, owner=owner, thread_id=request.thread_id, required_role=request.required_role,
            reviewer=request.reviewer, created_after=created_after, created_before=created_before)
        return pb.ListApprovalsResponse(approvals=[approval_to_proto(a) for a in records], next_page_token=token)

    async def GetApproval(self, request, context):
        approval = await self._approvals.get(request.approval_id)
        me = caller()
        if not (me.has("reviewer") and me.covers(approval.graph)):  # else: is it the caller's own run's?
            ensure_can_see_approval(me, approval, await self._run_owner(approval))
        return pb.GetApprovalResponse(approval=approval_to_proto(approval))

    async def _run_owner(self, approval) -> str | None:
        """The owner of the approval's run; None when the caller submits nothing (it cannot own one)."""
        if not caller().has("submitter"):
            return None
        return (await self._approvals.runs.get_run(approval.run_id)).owner

    async def WatchApprovals(self, request, context):
        me = caller()
        if request.graph:
            me.require("reviewer", graph=request.graph, action=f"watch approvals of '{request.graph}'")
        after = request.after_sequence
        if after:
            last = await last_stream_sequence(self._js)
            if after > last:
                # Also keeps after + 1 (JetStream's start sequence) inside its range.
                raise InvalidArgument(f"after_sequence {after} is beyond the last approval event ({last}); "
                                      "resume from a sequence this service sent, or 0 for now",
                                      code="SEQUENCE_OUT_OF_RANGE")
        if not after:
            # A new watcher starts now; with include_pending it first gets what is open.
            after = await last_stream_sequence(self._js)
            if request.include_pending:
                async for approval in self._pending(request.graph):
                    yield pb.WatchApprovalsResponse(event=pb.ApprovalEvent(
                        sequence=after, approval=approval_to_proto(approval), pending_snapshot=True))
                if request.mark_snapshot_end:
                    yield pb.WatchApprovalsResponse(event=pb.ApprovalEvent(sequence=after, snapshot_end=True))
        async for event in watch(self._js, graph=request.graph, after_sequence=after, idle_timeout=1.0):
            if event is not None:
                if me.covers(event.approval.graph):  # other graphs' approvals are not this reviewer's
                    yield pb.WatchApprovalsResponse(event=event)
            elif self._stopping.is_set():
                await end_stream_for_shutdown(context)

    async def _pending(self, graph: str):
        token = None
        while token != "":
            records, token = await self._approvals.list(statuses=["PENDING"], graph=graph, page_size=500,
                                                        page_token=token or "", graphs=_covered(caller()))
            for record in records:
                yield record

    async def Decide(self, request, context):
        kind = RESPOND if request.kind == pb.DECISION_KIND_RESPOND else DECISION_KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind must be APPROVE, REJECT, EDIT or RESPOND")
        value = _decision_value(request, kind)
        started = time.time_ns()
        me, approval = caller(), await self._approvals.get(request.approval_id)
        owner = None if me.has("reviewer") and me.covers(approval.graph) else await self._run_owner(approval)
        as_owner = ensure_can_decide(me, approval, owner)
        if as_owner and not is_canonical(approval.resume_shape, approval.payload, kind, value, request.comment):
            # An owner answers; a review is a reviewer's. It may send a value (RESPOND) or the
            # decision a value stands for (graphmesh/resume.py canonical_decision), nothing more.
            raise PermissionDenied(
                f"{me.name} answers approval {approval.approval_id} as the owner of run {approval.run_id}: it may "
                f"RESPOND with a value, or send the APPROVE / REJECT / EDIT a value stands for in the "
                f"'{approval.resume_shape}' shape; this {kind.upper()} needs a reviewer", code="ROLE_REQUIRED")
        # The store refuses (INVALID_ARGUMENT) a decision the interrupt's shape does not allow;
        # `edited_value` carries a RESPOND's value too (graphmesh/store/approvals.py).
        # An owner's decision says so in the audit, and the node policy gate never counts it as an approval.
        result = await self._lifecycle.decide(request.approval_id, kind=kind, edited_value=value,
                                              comment=request.comment, reviewer=principal(context),
                                              audit_details={"as_owner": True} if as_owner else None)
        if not result.replayed:
            approval = result.approval
            DECISION_LATENCY.record((approval.decided_at - approval.created_at).total_seconds(),
                                    {"graph": approval.graph, "decision": kind})
            # The decision joins the run's trace (the RPC's own trace is the reviewer's;
            # it is linked), and the resumed execution follows from it.
            run = result.resumed.run if result.resumed is not None else await self._approvals.runs.get_run(approval.run_id)
            with run_span("approval.decide", run, start_time=started,
                          links=[Link(trace.get_current_span().get_span_context())],
                          **{"graphmesh.approval_id": approval.approval_id, "graphmesh.decision": kind,
                             "graphmesh.node": approval.node, "graphmesh.resumed": result.resumed is not None}):
                await self._lifecycle.announce_decision(result, kind)
        return pb.DecideResponse(approval=approval_to_proto(result.approval))

    async def ListAuditRecords(self, request, context):
        me = caller()
        if not me.covers(ALL_GRAPHS):  # the audit trail spans graphs: narrowed callers name a run of theirs
            if not request.run_id:
                raise PermissionDenied(f"{me.name} covers only some graphs: ask for one run's audit records "
                                       "(run_id)", code="GRAPH_NOT_COVERED")
            run = await self._approvals.runs.get_run(request.run_id)
            me.require("reviewer", "operator", graph=run.graph, action=f"read the audit of run {run.run_id}")
        time_after, time_before = _time_range(request, "time_after", "time_before")
        records, token = await self._approvals.audit_records(
            run_id=request.run_id, approval_id=request.approval_id,
            page_size=page_size(request.page_size, 100), page_token=request.page_token,
            actor=request.actor, thread_id=request.thread_id, time_after=time_after, time_before=time_before,
            newest_first=request.newest_first)
        return pb.ListAuditRecordsResponse(
            records=[pb.AuditRecord(record_id=str(r.record_id), time=timestamp(r.time), actor=r.actor,
                                    action=r.action, approval_id=r.approval_id, run_id=r.run_id,
                                    details=to_struct(r.details)) for r in records],
            next_page_token=token)
