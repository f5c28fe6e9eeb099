"""What the review page's HTTP handlers call: graphmesh's own gRPC services, with the
signed-in reviewer's token, so the page can never do more than that token may.

The page holds no authority of its own: every call forwards the caller's bearer token to
ReviewService (this process's own gRPC server) or to the api (RunService, GraphService,
AuthService), whose interceptors authenticate and authorize it exactly as for the CLI.
What this module adds is presentation: approvals as JSON with what the signed-in reviewer
may do with them (ensure_can_decide and the interrupt's allowed decisions, the same rules
the server enforces).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator

import grpc
from google.protobuf import json_format, timestamp_pb2

from graphmesh.auth.principals import Principal, ensure_can_decide
from graphmesh.cli.render import event_line
from graphmesh.client import aio_channel
from graphmesh.errors import GraphmeshError, InvalidArgument
from graphmesh.resume import allowed_decisions, detect_shape
from graphmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    graph_service_pb2,
    graph_service_pb2_grpc,
    review_service_pb2,
    review_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)

CALL_TIMEOUT = 10.0
APPROVAL_STATUSES = {name.removeprefix("APPROVAL_STATUS_"): value
                     for name, value in review_service_pb2.ApprovalStatus.items() if value}
DECISION_KINDS = {"approve": review_service_pb2.DECISION_KIND_APPROVE,
                  "reject": review_service_pb2.DECISION_KIND_REJECT,
                  "edit": review_service_pb2.DECISION_KIND_EDIT}
TERMINAL_RUN = {run_pb2.RUN_STATUS_COMPLETED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}


def _dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _iso(ts: timestamp_pb2.Timestamp) -> str | None:
    return ts.ToJsonString() if ts.seconds or ts.nanos else None


def parse_time(value: str, name: str) -> timestamp_pb2.Timestamp | None:
    """An ISO 8601 time from a query string (a bare date-time is taken as UTC)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{name} must be an ISO 8601 time, e.g. 2026-12-07T15:00:00Z; got {value!r}") from None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when if when.tzinfo else when.replace(tzinfo=None))
    return ts


def payload_of(approval: review_service_pb2.Approval) -> Any:
    """The interrupt's value as the graph passed it: a Struct carries a non-object payload
    (a HumanInterrupt list, a string) as {"value": ...}."""
    payload = _dict(approval.payload) if approval.HasField("payload") else None
    if isinstance(payload, dict) and set(payload) == {"value"}:
        inner = payload["value"]
        if not isinstance(inner, dict) or detect_shape(inner) != "plain":
            return inner
    return payload


@dataclass(frozen=True)
class Reviewer:
    """The signed-in principal, as WhoAmI reports it."""

    token: str
    principal: Principal

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def as_json(self) -> dict:
        return {"principal": self.principal.name, "roles": sorted(self.principal.roles),
                "graphs": sorted(self.principal.graphs), "authenticated_by": self.principal.via}


def approval_json(approval: review_service_pb2.Approval, reviewer: Reviewer) -> dict:
    payload = payload_of(approval)
    status = review_service_pb2.ApprovalStatus.Name(approval.status).removeprefix("APPROVAL_STATUS_")
    allowed, reject_needs_comment = allowed_decisions(approval.resume_shape, payload)
    reason = ""
    if status != "PENDING":
        reason = f"this approval is {status.lower()}"
    else:
        try:
            ensure_can_decide(reviewer.principal, approval)
        except GraphmeshError as e:
            reason = e.message
    decision = None
    if approval.HasField("decision"):
        d = approval.decision
        decision = {"kind": review_service_pb2.DecisionKind.Name(d.kind).removeprefix("DECISION_KIND_"),
                    "edited_value": _dict(d.edited_value) if d.HasField("edited_value") else None,
                    # A RESPOND's resume value (any JSON; null too: RESPONDED says there is one).
                    "value": _dict(d.value) if d.HasField("value") else None,
                    "comment": d.comment, "reviewer": d.reviewer, "decided_at": _iso(d.decided_at)}
    return {
        "approval_id": approval.approval_id, "run_id": approval.run_id, "thread_id": approval.thread_id,
        "graph": approval.graph, "graph_version": approval.graph_version, "node": approval.node,
        "interrupt_id": approval.interrupt_id, "payload": payload, "required_role": approval.required_role,
        "status": status, "created_at": _iso(approval.created_at), "expires_at": _iso(approval.expires_at),
        "decision": decision, "resume_shape": approval.resume_shape,
        "can_decide": not reason, "cannot_decide_reason": reason,
        "allowed_decisions": allowed, "reject_needs_comment": reject_needs_comment,
    }


def event_json(event: run_pb2.RunEvent) -> dict:
    return {"sequence": event.sequence, "type": event.WhichOneof("kind") or "", "time": _iso(event.time),
            "summary": event_line(event).split(None, 1)[-1].strip(), "event": _dict(event)}


class ReviewBackend:
    """gRPC stubs shared by every request; each call carries its reviewer's token."""

    def __init__(self, *, review_address: str, api_address: str) -> None:
        self._review_channel = aio_channel(review_address, token="")
        self.review = review_service_pb2_grpc.ReviewServiceStub(self._review_channel)
        self._api_channel = aio_channel(api_address, token="") if api_address else None
        self.runs = run_service_pb2_grpc.RunServiceStub(self._api_channel) if self._api_channel else None
        self.graphs = graph_service_pb2_grpc.GraphServiceStub(self._api_channel) if self._api_channel else None
        self.auth = auth_service_pb2_grpc.AuthServiceStub(self._api_channel) if self._api_channel else None

    async def close(self) -> None:
        await self._review_channel.close()
        if self._api_channel is not None:
            await self._api_channel.close()

    # -- who is signed in ---------------------------------------------------------------

    async def sign_in(self, token: str) -> Reviewer:
        """Checks the token with the api's WhoAmI (UNAUTHENTICATED when refused)."""
        if self.auth is None:
            raise InvalidArgument("the review page has no api address (GRAPHMESH_API_ADDRESS)", code="NO_API")
        me = await self.auth.WhoAmI(auth_service_pb2.WhoAmIRequest(), timeout=CALL_TIMEOUT,
                                    metadata=(("authorization", f"Bearer {token}"),))
        reviewer = Reviewer(token, Principal(me.principal, frozenset(me.roles), frozenset(me.graphs or ["*"]),
                                             via=me.authenticated_by))
        return reviewer

    # -- approvals ---------------------------------------------------------------------------

    async def list_approvals(self, reviewer: Reviewer, query: dict[str, Any]) -> dict:
        request = review_service_pb2.ListApprovalsRequest(
            statuses=[_status(s) for s in query.get("status", [])], graph=query.get("graph", ""),
            run_id=query.get("run_id", ""), thread_id=query.get("thread_id", ""),
            required_role=query.get("role", ""), reviewer=query.get("reviewer", ""),
            page_size=_int(query.get("page_size", "50"), "page_size"), page_token=query.get("page_token", ""))
        for field in ("created_after", "created_before"):
            ts = parse_time(query.get(field, ""), field)
            if ts is not None:
                getattr(request, field).CopyFrom(ts)
        response = await self.review.ListApprovals(request, timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return {"approvals": [approval_json(a, reviewer) for a in response.approvals],
                "next_page_token": response.next_page_token}

    async def get_approval(self, reviewer: Reviewer, approval_id: str) -> review_service_pb2.Approval:
        response = await self.review.GetApproval(review_service_pb2.GetApprovalRequest(approval_id=approval_id),
                                                 timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return response.approval

    async def approval_page(self, reviewer: Reviewer, approval_id: str) -> dict:
        """The approval with its run and its thread's current state; what the api refuses
        (a reviewer may see the approval but not the run) is named, not fatal."""
        approval = await self.get_approval(reviewer, approval_id)
        page = {"approval": approval_json(approval, reviewer), "run": None, "run_error": "",
                "thread_state": None, "state_error": ""}
        if self.runs is None:
            page["run_error"] = page["state_error"] = "the review page has no api address (GRAPHMESH_API_ADDRESS)"
            return page
        try:
            run = await self.runs.GetRun(run_service_pb2.GetRunRequest(run_id=approval.run_id),
                                         timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
            page["run"] = _dict(run.run)
        except grpc.RpcError as e:
            page["run_error"] = e.details() or e.code().name
        try:
            state = await self.runs.GetThreadState(run_service_pb2.GetThreadStateRequest(thread_id=approval.thread_id),
                                                   timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
            page["thread_state"] = {"values": _dict(state.values), "next": list(state.next),
                                    "checkpoint_id": state.checkpoint_id, "active_run_id": state.active_run_id}
        except grpc.RpcError as e:
            page["state_error"] = e.details() or e.code().name
        return page

    async def decide(self, reviewer: Reviewer, approval_id: str, body: dict) -> dict:
        kind = body.get("kind")
        if kind not in DECISION_KINDS:
            raise InvalidArgument("kind must be approve, reject or edit")
        request = review_service_pb2.DecideRequest(approval_id=approval_id, kind=DECISION_KINDS[kind],
                                                   comment=str(body.get("comment") or ""))
        if kind == "edit":
            value = body.get("edited_value")
            if not isinstance(value, dict):
                raise InvalidArgument("an edit's edited_value must be a JSON object", code="EDITED_VALUE_INVALID")
            request.edited_value.update(value)
        response = await self.review.Decide(request, timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return {"approval": approval_json(response.approval, reviewer)}

    async def watch(self, reviewer: Reviewer, *, after: int, graph: str) -> AsyncIterator[dict]:
        request = review_service_pb2.WatchApprovalsRequest(include_pending=not after, mark_snapshot_end=True,
                                                           graph=graph, after_sequence=after)
        call = self.review.WatchApprovals(request, metadata=reviewer.metadata)
        try:
            async for response in call:
                event = response.event
                kind = event.WhichOneof("kind")
                if kind == "snapshot_end":
                    yield {"type": "snapshot_done", "sequence": event.sequence}
                else:
                    yield {"type": kind, "sequence": event.sequence,
                           "approval": approval_json(event.approval, reviewer)}
        finally:
            call.cancel()

    async def audit(self, reviewer: Reviewer, query: dict[str, Any]) -> dict:
        request = review_service_pb2.ListAuditRecordsRequest(
            run_id=query.get("run_id", ""), approval_id=query.get("approval_id", ""),
            actor=query.get("actor", ""), thread_id=query.get("thread_id", ""), newest_first=True,
            page_size=_int(query.get("page_size", "50"), "page_size"), page_token=query.get("page_token", ""))
        for field, name in (("time_after", "after"), ("time_before", "before")):
            ts = parse_time(query.get(name, ""), name)
            if ts is not None:
                getattr(request, field).CopyFrom(ts)
        response = await self.review.ListAuditRecords(request, timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return {"records": [{**_dict(r), "time": _iso(r.time), "details": _dict(r.details)}
                            for r in response.records],
                "next_page_token": response.next_page_token}

    # -- runs (served by the api) -------------------------------------------------------------

    async def graph_names(self, reviewer: Reviewer) -> dict:
        response = await self._api(self.graphs).ListGraphs(graph_service_pb2.ListGraphsRequest(),
                                                           timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return {"graphs": sorted({g.name for g in response.graphs})}

    async def run_events(self, reviewer: Reviewer, run_id: str, after: int) -> AsyncIterator[dict]:
        call = self._api(self.runs).StreamRun(run_service_pb2.StreamRunRequest(run_id=run_id, after_sequence=after),
                                              metadata=reviewer.metadata)
        try:
            async for response in call:
                yield event_json(response.event)
        finally:
            call.cancel()

    async def trace(self, reviewer: Reviewer, run_id: str) -> dict:
        response = await self._api(self.runs).GetRunTrace(run_service_pb2.GetRunTraceRequest(run_id=run_id),
                                                          timeout=CALL_TIMEOUT, metadata=reviewer.metadata)
        return {"trace_id": response.trace_id, "spans": [_dict(s) | {"depth": s.depth} for s in response.spans]}

    @staticmethod
    def _api(stub):
        if stub is None:
            raise InvalidArgument("the review page has no api address (GRAPHMESH_API_ADDRESS)", code="NO_API")
        return stub


def _status(name: str) -> int:
    value = APPROVAL_STATUSES.get(name.upper())
    if value is None:
        raise InvalidArgument(f"unknown approval status {name!r}; one of {', '.join(APPROVAL_STATUSES)}")
    return value


def _int(value: str, name: str) -> int:
    if not str(value).isdigit():
        raise InvalidArgument(f"{name} must be a whole number, got {value!r}")
    return int(value)
