"""The body a delivery posts, in the Standard Webhooks shape {type, timestamp, data}.

`data` holds the run record (the same JSON as RunService's Run, proto field names), the
status this delivery announces, its timings, and the thread's output values (COMPLETED,
WAITING_FOR_APPROVAL) or the run's error (FAILED, CANCELLED). It is built once, at the
first attempt, and stored with the delivery: retries and replays send the same bytes
(`body` serialises it canonically). Known secrets are redacted from all of it.

The run record is read when the body is built, so it may be newer than the status change
(a run retried before its webhook went out); `data.status` and `data.event_sequence` are
the status change's own, and the output is included only while the thread's latest
checkpoint is still this run's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from google.protobuf import json_format

from graphmesh.jsonvalues import jsonable
from graphmesh.messages import run_to_proto
from graphmesh.secrets import redact_value
from graphmesh.store import RunRecord

log = logging.getLogger(__name__)

EVENT_TYPES = {
    "COMPLETED": "run.completed",
    "FAILED": "run.failed",
    "CANCELLED": "run.cancelled",
    "WAITING_FOR_APPROVAL": "run.waiting_for_approval",
}
WITH_OUTPUT = ("COMPLETED", "WAITING_FOR_APPROVAL")
# Output values larger than this (as JSON) are left out, with a note: a webhook is a
# notification, and receivers read big state with GetThreadState.
MAX_OUTPUT_BYTES = 256 * 1024


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start, end) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


def build(delivery, run: RunRecord, thread_state) -> dict[str, Any]:
    """The payload of `delivery` (a webhooks.store.Delivery) for `run`, with the thread's
    state as read now (a thread_state.ThreadState, or an Exception if it could not be read)."""
    status = delivery.run_status
    ended = run.finished_at if status in ("COMPLETED", "FAILED", "CANCELLED") else None
    data: dict[str, Any] = {
        "run": json_format.MessageToDict(run_to_proto(run), preserving_proto_field_name=True),
        "status": status,
        "event_sequence": delivery.event_seq,
        "timings": {
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(ended),
            "status_changed_at": _iso(delivery.created_at),
            "queued_seconds": _seconds(run.created_at, run.started_at),
            "run_seconds": _seconds(run.started_at, ended),
        },
    }
    if status in WITH_OUTPUT:
        data.update(_output(run, thread_state))
    elif run.error is not None:
        data["error"] = {"code": run.error.code, "message": run.error.message, "node": run.error.node}
    return {
        "type": EVENT_TYPES.get(status, f"run.{status.lower()}"),
        "timestamp": _iso(delivery.created_at),
        "data": redact_value(data),
    }


def _output(run: RunRecord, state) -> dict[str, Any]:
    if isinstance(state, Exception):
        return {"output": None, "output_unavailable": f"the thread's state could not be read: {state}"}
    writer = (state.metadata or {}).get("gm_run_id", "")
    if writer and writer != run.run_id:
        return {"output": None,
                "output_unavailable": f"the thread has moved on: its latest checkpoint was written by run {writer}"}
    values = jsonable(state.values)
    try:
        size = len(json.dumps(values, allow_nan=False))
    except ValueError:
        return {"output": None, "output_unavailable": "the output holds numbers JSON cannot carry (NaN, Infinity)"}
    if size > MAX_OUTPUT_BYTES:
        return {"output": None, "output_unavailable": f"the output is {size} bytes of JSON, over the webhook's "
                                                      f"{MAX_OUTPUT_BYTES}; read it with GetThreadState"}
    return {"output": values}


def body(payload: Any) -> bytes:
    """The bytes on the wire: canonical JSON (sorted keys, no spaces), so the payload as
    stored in Postgres (jsonb) serialises to the same bytes on every attempt."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
