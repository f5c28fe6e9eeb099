"""Run store records <-> the v1 protobuf messages (runs, events, approvals, spans). Plain
message building, no gRPC: the bus, the executor and the services all use it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2

from graphmesh.jsonvalues import to_struct, to_value
from graphmesh.store import ApprovalRecord, RunError, RunRecord, RunStatus
from graphmesh.v1 import review_service_pb2, run_pb2, run_service_pb2

STRATEGY_NAMES = {
    run_pb2.MULTITASK_STRATEGY_UNSPECIFIED: "reject",
    run_pb2.MULTITASK_STRATEGY_REJECT: "reject",
    run_pb2.MULTITASK_STRATEGY_ENQUEUE: "enqueue",
    run_pb2.MULTITASK_STRATEGY_INTERRUPT: "interrupt",
    run_pb2.MULTITASK_STRATEGY_ROLLBACK: "rollback",
}
STRATEGY_VALUES = {
    "reject": run_pb2.MULTITASK_STRATEGY_REJECT,
    "enqueue": run_pb2.MULTITASK_STRATEGY_ENQUEUE,
    "interrupt": run_pb2.MULTITASK_STRATEGY_INTERRUPT,
    "rollback": run_pb2.MULTITASK_STRATEGY_ROLLBACK,
}


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def status_to_proto(status: RunStatus) -> int:
    return run_pb2.RunStatus.Value(f"RUN_STATUS_{status.value}")


def status_from_proto(value: int) -> RunStatus:
    name = run_pb2.RunStatus.Name(value)
    return RunStatus(name.removeprefix("RUN_STATUS_"))


def error_to_proto(error: RunError | None) -> run_pb2.RunError | None:
    return run_pb2.RunError(code=error.code, message=error.message, node=error.node) if error else None


def migration_to_proto(m: dict[str, Any]) -> run_pb2.CheckpointMigration:
    """A migration as the run store keeps it (JSON) -> proto."""
    msg = run_pb2.CheckpointMigration(
        from_versions=run_pb2.Versions(**m["from_versions"]), to_versions=run_pb2.Versions(**m["to_versions"]),
        from_checkpoint_id=m["from_checkpoint_id"], to_checkpoint_id=m["to_checkpoint_id"], steps=m["steps"])
    msg.time.FromJsonString(m["time"])
    return msg


def run_to_proto(run: RunRecord) -> run_pb2.Run:
    msg = run_pb2.Run(
        run_id=run.run_id,
        thread_id=run.thread_id,
        graph=run.graph,
        versions=run_pb2.Versions(**run.versions),
        status=status_to_proto(run.status),
        attempt=run.attempt,
        owner=run.owner,
        idempotency_key=run.idempotency_key,
        metadata=run.metadata,
        multitask_strategy=STRATEGY_VALUES.get(run.multitask_strategy, 0),
        previous_errors=[error_to_proto(e) for e in run.previous_errors],
    )
    msg.migrations.extend(migration_to_proto(m) for m in run.migrations)
    if run.error:
        msg.error.CopyFrom(error_to_proto(run.error))
    if run.schedule_id:
        msg.schedule_id = run.schedule_id
    if run.webhook:
        msg.webhook.CopyFrom(run_pb2.Webhook(url=run.webhook["url"], on_waiting=bool(run.webhook.get("on_waiting"))))
    if run.options:
        # Stored as the proto's own JSON (graphmesh/execution/run_options.py), so it parses back.
        json_format.ParseDict(run.options, msg.options, ignore_unknown_fields=True)
    for field in ("created_at", "started_at", "updated_at", "finished_at", "scheduled_for", "run_after"):
        ts = timestamp(getattr(run, field))
        if ts is not None:
            getattr(msg, field).CopyFrom(ts)
    return msg


DECISION_KINDS = {
    review_service_pb2.DECISION_KIND_APPROVE: "approve",
    review_service_pb2.DECISION_KIND_REJECT: "reject",
    review_service_pb2.DECISION_KIND_EDIT: "edit",
    review_service_pb2.DECISION_KIND_RESPOND: "respond",
}
DECISION_KIND_VALUES = {name: value for value, name in DECISION_KINDS.items()}


def approval_status_to_proto(status: str) -> int:
    return review_service_pb2.ApprovalStatus.Value(f"APPROVAL_STATUS_{status}")


def approval_to_proto(approval: ApprovalRecord) -> review_service_pb2.Approval:
    msg = review_service_pb2.Approval(
        approval_id=approval.approval_id,
        run_id=approval.run_id,
        thread_id=approval.thread_id,
        graph=approval.graph,
        graph_version=approval.graph_version,
        node=approval.node,
        interrupt_id=approval.interrupt_id,
        payload=to_struct(approval.payload),
        required_role=approval.required_role,
        status=approval_status_to_proto(approval.status),
        resume_shape=approval.resume_shape,
    )
    msg.created_at.CopyFrom(timestamp(approval.created_at))
    if approval.expires_at:
        msg.expires_at.CopyFrom(timestamp(approval.expires_at))
    if approval.decided_at:
        decision = msg.decision
        decision.kind = DECISION_KIND_VALUES.get(approval.decision_kind or "", 0)
        decision.comment = approval.comment
        decision.reviewer = approval.reviewer
        decision.decided_at.CopyFrom(timestamp(approval.decided_at))
        if approval.edited_value is not None:
            decision.edited_value.CopyFrom(to_struct(approval.edited_value))
        if approval.status == "RESPONDED":  # its value may be null: the status says it has one
            decision.value.CopyFrom(to_value(approval.responded_value))
    return msg


def span_to_proto(span: dict[str, Any]) -> run_service_pb2.Span:
    """A stored span (telemetry/span_store.py) -> proto; attribute values as text."""
    return run_service_pb2.Span(
        span_id=span["span_id"], parent_span_id=span["parent_span_id"], name=span["name"],
        service=span["service"], start_unix_nano=span["start_ns"], end_unix_nano=span["end_ns"],
        status=span["status"], status_message=span["status_message"], kind=span["kind"], depth=span["depth"],
        attributes={k: v if isinstance(v, str) else json.dumps(v) for k, v in span["attributes"].items()},
    )
