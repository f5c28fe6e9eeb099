"""graphmesh's protobuf records as the LangGraph HTTP API shapes them: Assistant, Thread,
ThreadState (LangGraph's StateSnapshot as the reference server serialises it), Cron and
store Item. Pure functions; the routes (and the runs module) call them.

Where graphmesh records less than the reference server, the missing parts are null or
empty rather than invented (docs/langgraph-api.md lists them)."""

from __future__ import annotations

from typing import Any, Iterable

from graphmesh.v1 import (
    assistant_service_pb2,
    run_pb2,
    schedule_service_pb2,
    store_service_pb2,
    thread_pb2,
)
from services.gateway.jsonio import iso, plain, struct_or_none

THREAD_STATUS = {
    thread_pb2.THREAD_STATUS_IDLE: "idle",
    thread_pb2.THREAD_STATUS_BUSY: "busy",
    thread_pb2.THREAD_STATUS_INTERRUPTED: "interrupted",
    thread_pb2.THREAD_STATUS_ERROR: "error",
}
THREAD_STATUS_OF = {name: value for value, name in THREAD_STATUS.items()}

ASSISTANT_FIELDS = ("assistant_id", "graph_id", "name", "description", "config", "context", "metadata", "version",
                    "created_at", "updated_at")
THREAD_FIELDS = ("thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "status", "values",
                 "interrupts", "config", "error")
CRON_FIELDS = ("cron_id", "assistant_id", "thread_id", "on_run_completed", "end_time", "schedule", "timezone",
               "created_at", "updated_at", "user_id", "payload", "next_run_date", "metadata", "enabled")


def select_fields(item: dict, select: Iterable[str] | None) -> dict:
    """Only the fields a request's `select` names (all when it names none)."""
    if not select:
        return item
    return {k: v for k, v in item.items() if k in select}


# -- assistants ----------------------------------------------------------------------


def assistant_json(a: assistant_service_pb2.Assistant) -> dict[str, Any]:
    metadata = plain(a.metadata) if a.HasField("metadata") else {}
    if a.system:
        # The reference server marks the assistant it makes per graph this way.
        metadata = {"created_by": "system", **metadata}
    return {
        "assistant_id": a.assistant_id,
        "graph_id": a.graph,
        "name": a.name,
        "description": a.description or None,
        "config": plain(a.config) if a.HasField("config") else {},
        "context": plain(a.context) if a.HasField("context") else {},
        "metadata": metadata,
        "version": a.version or 1,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
    }


def run_thread_metadata(assistant: assistant_service_pb2.Assistant) -> dict[str, str]:
    """What a run writes into its thread's metadata, as the reference server does (and
    agent-chat-ui lists threads by): the graph and the assistant it ran."""
    return {"graph_id": assistant.graph, "assistant_id": assistant.assistant_id}


# -- threads -------------------------------------------------------------------------


def interrupt_json(i: thread_pb2.ThreadInterrupt) -> dict[str, Any]:
    """LangGraph's Interrupt as the API shows it: {"value", "id"} (RemoteGraph builds
    Interrupt(**it), so no other keys)."""
    return {"value": plain(i.value) if i.HasField("value") else None, "id": i.interrupt_id}


def thread_interrupts_json(interrupts: Iterable[thread_pb2.ThreadInterrupt]) -> dict[str, list[dict]]:
    """Thread.interrupts: the reference keys them by the task that raised them; graphmesh's
    thread record does not carry task ids, so each is keyed by its interrupt id (clients
    such as agent-inbox read the values, flattened)."""
    return {i.interrupt_id: [interrupt_json(i)] for i in interrupts}


def thread_json(t: thread_pb2.Thread, *, with_values: bool = True) -> dict[str, Any]:
    updated = iso(t.updated_at)
    return {
        "thread_id": t.thread_id,
        "created_at": iso(t.created_at),
        "updated_at": updated,
        "state_updated_at": updated,
        "metadata": plain(t.metadata) if t.HasField("metadata") else {},
        "status": THREAD_STATUS.get(t.status, "idle"),
        "config": {},
        "values": (plain(t.values) if t.HasField("values") else None) if with_values else None,
        "interrupts": thread_interrupts_json(t.interrupts),
        "error": None,
    }


def checkpoint_json(thread_id: str, checkpoint_id: str, checkpoint_ns: str = "") -> dict[str, Any] | None:
    if not checkpoint_id:
        return None
    return {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id,
            "checkpoint_map": {}}


def task_json(thread_id: str, task: thread_pb2.ThreadTask) -> dict[str, Any]:
    return {
        "id": task.task_id,
        "name": task.name,
        "path": [],
        "error": task.error or None,
        "interrupts": [interrupt_json(i) for i in task.interrupts],
        # A subgraph task points at the subgraph's checkpoint namespace, as LangGraph's
        # snapshot does when subgraph states are not expanded.
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": task.checkpoint_ns} if task.checkpoint_ns else None,
        "state": None,
        "result": None,
    }


def state_json(thread_id: str, s: thread_pb2.ThreadSnapshot | None) -> dict[str, Any]:
    """A ThreadState as the reference serialises LangGraph's StateSnapshot; a thread with no
    checkpoint yet reads as empty values with no checkpoint."""
    if s is None or not s.checkpoint_id:
        return {"values": {}, "next": [], "tasks": [], "metadata": None, "created_at": None, "checkpoint": None,
                "parent_checkpoint": None, "interrupts": [], "checkpoint_id": None, "parent_checkpoint_id": None}
    metadata = plain(s.metadata) if s.HasField("metadata") else {}
    if metadata.get("checkpoint_ns") == "":
        metadata.pop("checkpoint_ns")
    return {
        "values": plain(s.values) if s.HasField("values") else {},
        "next": list(s.next),
        "tasks": [task_json(thread_id, t) for t in s.tasks],
        "metadata": metadata,
        "created_at": iso(s.created_at),
        "checkpoint": checkpoint_json(thread_id, s.checkpoint_id, s.checkpoint_ns),
        "parent_checkpoint": checkpoint_json(thread_id, s.parent_checkpoint_id, s.checkpoint_ns),
        "interrupts": [interrupt_json(i) for i in s.interrupts],
        # Deprecated in the reference, still sent.
        "checkpoint_id": s.checkpoint_id,
        "parent_checkpoint_id": s.parent_checkpoint_id or None,
    }


# -- crons ---------------------------------------------------------------------------

# Schedule metadata keys the gateway keeps its own facts under (schedule metadata is
# strings only, and every fire's run carries it).
CRON_ASSISTANT_KEY = "assistant_id"


def cron_json(s: schedule_service_pb2.Schedule, *, assistant_id: str | None = None) -> dict[str, Any]:
    metadata = dict(s.metadata)
    assistant = metadata.pop(CRON_ASSISTANT_KEY, "") or assistant_id or s.graph
    on_completed = None
    if not s.thread_id:
        on_completed = "delete" if s.on_run_completed == schedule_service_pb2.ON_RUN_COMPLETED_DELETE else "keep"
    payload: dict[str, Any] = {"assistant_id": assistant, "input": plain(s.input) if s.HasField("input") else None,
                               "metadata": metadata}
    if s.HasField("webhook") and s.webhook.url:
        payload["webhook"] = s.webhook.url
    if s.thread_id:
        payload["multitask_strategy"] = multitask_name(s.multitask_strategy)
    else:
        payload["on_run_completed"] = on_completed
    return {
        "cron_id": s.schedule_id,
        "assistant_id": assistant,
        "thread_id": s.thread_id or None,
        "on_run_completed": on_completed,
        "end_time": iso(s.end_time),
        "schedule": s.cron,
        "timezone": s.timezone or None,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "user_id": s.owner or None,
        "payload": payload,
        "next_run_date": iso(s.next_fire_at),
        "metadata": metadata,
        "enabled": s.state != schedule_service_pb2.SCHEDULE_STATE_PAUSED,
    }


# LangGraph's multitask_strategy names and graphmesh's enum, both ways.
MULTITASK = {
    "reject": run_pb2.MULTITASK_STRATEGY_REJECT,
    "enqueue": run_pb2.MULTITASK_STRATEGY_ENQUEUE,
    "interrupt": run_pb2.MULTITASK_STRATEGY_INTERRUPT,
    "rollback": run_pb2.MULTITASK_STRATEGY_ROLLBACK,
}
MULTITASK_NAME = {value: name for name, value in MULTITASK.items()}


def multitask_name(value: int, default: str = "enqueue") -> str:
    """The name of a strategy; `default` for UNSPECIFIED (a run's is reject, a schedule's enqueue)."""
    return MULTITASK_NAME.get(value, default)


# -- store ---------------------------------------------------------------------------


def item_json(item: store_service_pb2.StoreItem) -> dict[str, Any]:
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": struct_or_none(item, "value") or {},
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
    }
