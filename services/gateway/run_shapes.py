"""A graphmesh run as the LangGraph HTTP API shows it (the reference server's Run object).

Statuses: LangGraph has six (pending, running, error, success, timeout, interrupted) where
graphmesh has seven. QUEUED is pending, RUNNING running, COMPLETED success, FAILED error
(timeout when the run outlived its time limit), CANCELLED interrupted (LangGraph's word for
a run cancelled with action=interrupt or rollback). WAITING_FOR_APPROVAL and PAUSED are
interrupted too: the reference ends a run that called interrupt() as success and resumes on
a new run, but graphmesh's run itself waits and resumes under the same id, so it is reported
as at rest, not finished (clients that poll until the status leaves pending/running stop
there, and a stream reconnect does not spin on it).

Metadata: graphmesh keeps a run's metadata as strings (map<string, string>); the gateway
stores strings as they are and any other JSON value as its JSON text, and shows them back
as stored (a number given as metadata comes back as its text).
"""

from __future__ import annotations

from typing import Any

from graphmesh.assistants import system_assistant_id
from graphmesh.v1 import run_pb2
from services.gateway.jsonio import iso, plain
from services.gateway.shapes import multitask_name

# Where a run records the assistant it was created through (the reference does the same).
ASSISTANT_KEY = "assistant_id"
# Errors that mean the run outlived its time limit (graphmesh/run_errors.py).
TIMEOUT_CODES = frozenset({"RUN_TIMEOUT", "DEADLINE_EXCEEDED"})
# Where a run ends (it may still be resumed from WAITING_FOR_APPROVAL or PAUSED, not from these).
TERMINAL = frozenset({run_pb2.RUN_STATUS_COMPLETED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED})

STATUS = {
    run_pb2.RUN_STATUS_QUEUED: "pending",
    run_pb2.RUN_STATUS_RUNNING: "running",
    run_pb2.RUN_STATUS_PAUSED: "interrupted",
    run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL: "interrupted",
    run_pb2.RUN_STATUS_COMPLETED: "success",
    run_pb2.RUN_STATUS_FAILED: "error",
    run_pb2.RUN_STATUS_CANCELLED: "interrupted",
}

# A LangGraph status filter -> the graphmesh statuses it covers (timeout: FAILED, narrowed after).
STATUS_FILTER = {
    "pending": [run_pb2.RUN_STATUS_QUEUED],
    "running": [run_pb2.RUN_STATUS_RUNNING],
    "error": [run_pb2.RUN_STATUS_FAILED],
    "timeout": [run_pb2.RUN_STATUS_FAILED],
    "success": [run_pb2.RUN_STATUS_COMPLETED],
    "interrupted": [run_pb2.RUN_STATUS_CANCELLED, run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL,
                    run_pb2.RUN_STATUS_PAUSED],
}



def run_status(run: run_pb2.Run) -> str:
    if run.status == run_pb2.RUN_STATUS_FAILED and run.error.code in TIMEOUT_CODES:
        return "timeout"
    return STATUS.get(run.status, "pending")


def assistant_of(run: run_pb2.Run) -> str:
    return run.metadata.get(ASSISTANT_KEY) or system_assistant_id(run.graph)


def run_json(run: run_pb2.Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "thread_id": run.thread_id,
        "assistant_id": assistant_of(run),
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at) or iso(run.created_at),
        "status": run_status(run),
        "metadata": dict(run.metadata),
        "kwargs": run_kwargs(run),
        "multitask_strategy": multitask_name(run.multitask_strategy, "reject"),
    }


def run_kwargs(run: run_pb2.Run) -> dict[str, Any]:
    """What the run was asked to do, in the reference's kwargs names. The input is not part
    of graphmesh's run record as GetRun returns it, so it is absent here."""
    config: dict[str, Any] = {"configurable": plain(run.options.configurable) or {}}
    if run.options.tags:
        config["tags"] = list(run.options.tags)
    if run.options.recursion_limit:
        config["recursion_limit"] = run.options.recursion_limit
    command = None
    if run.options.HasField("command_update") or run.options.command_goto:
        command = {"update": plain(run.options.command_update) if run.options.HasField("command_update") else None,
                   "goto": list(run.options.command_goto) or None}
    return {
        "config": config,
        "context": plain(run.options.context) if run.options.HasField("context") else None,
        "command": command,
        "stream_mode": list(run.options.stream_modes),
        "subgraphs": run.options.stream_subgraphs,
        "interrupt_before": list(run.options.interrupt_before) or None,
        "interrupt_after": list(run.options.interrupt_after) or None,
        "checkpoint_id": run.options.checkpoint_id or None,
        "webhook": run.webhook.url or None,
        "attempt": run.attempt,
        "graph_id": run.graph,
    }


def error_json(error: run_pb2.RunError) -> dict[str, str]:
    """A failed run's error as the reference shapes it ({"error": type, "message": text});
    graphmesh's error code (e.g. NODE_FAILED, RUN_TIMEOUT) stands where the reference puts
    the exception's type."""
    return {"error": error.code or "Error", "message": error.message or "the run failed"}


__all__ = ["ASSISTANT_KEY", "STATUS_FILTER", "TIMEOUT_CODES", "assistant_of", "error_json", "run_json",
           "run_status"]
