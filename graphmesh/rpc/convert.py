"""Run store records <-> protobuf messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from graphmesh.store import RunRecord, RunStatus
from graphmesh.v1 import run_pb2

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
        previous_errors=[run_pb2.RunError(code=e.code, message=e.message, node=e.node)
                         for e in run.previous_errors],
    )
    if run.error:
        msg.error.CopyFrom(run_pb2.RunError(code=run.error.code, message=run.error.message, node=run.error.node))
    for field in ("created_at", "started_at", "updated_at", "finished_at"):
        ts = timestamp(getattr(run, field))
        if ts is not None:
            getattr(msg, field).CopyFrom(ts)
    return msg
