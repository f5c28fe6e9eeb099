"""Reading a thread's state with the code that wrote it.

A thread's latest checkpoint names the graph version that wrote it (its metadata). Read
through another version (another state schema) its state comes back silently wrong:
fields missing, `next` empty. So the state is read with the writing version's graph;
when this deployment no longer declares that version, straight from the checkpoint
(the values it holds and the nodes its trigger channels still wait on).

`read_thread` gives the summary RunService.GetThreadState has always returned;
`read_snapshot` and `read_history` give LangGraph's whole StateSnapshot (tasks, interrupts,
parent checkpoint, time) at the latest or a given checkpoint, and `snapshot_to_proto`
turns one into a graphmesh.v1 ThreadSnapshot. `latest_values` reads only a checkpoint's
values, without building the graph (thread listings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from google.protobuf import timestamp_pb2
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot
from pydantic import ValidationError

from graphmesh.errors import FailedPrecondition, GraphmeshError, InvalidArgument, NotFound, ResourceExhausted
from graphmesh.execution.saver import SecretInState, StateTooLarge, saver_for
from graphmesh.jsonvalues import jsonable, to_struct, to_value
from graphmesh.v1 import thread_pb2

__all__ = ["ThreadState", "json_contains", "latest_values", "read_history", "read_snapshot", "read_thread",
           "snapshot_to_proto", "update_state"]

_TRIGGER = "branch:to:"


@dataclass
class ThreadState:
    values: dict[str, Any] = field(default_factory=dict)
    next: list[str] = field(default_factory=list)
    checkpoint_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    read_with: str = ""  # the version whose graph read it; "" when read from the checkpoint alone


async def read_thread(registry: Any, pool: Any, graph_name: str, thread_id: str) -> ThreadState:
    default = registry.get(graph_name)
    saver = saver_for(pool, default, enforce_limits=False)
    latest = await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if latest is None:
        return ThreadState()
    metadata = dict(latest.metadata or {})
    version = str(metadata.get("graph_version") or default.version)
    try:
        spec = registry.get(graph_name, version)
    except NotFound:
        return _from_checkpoint(latest, metadata)
    graph = registry.compiled(spec.name, spec.version, checkpointer=saver_for(pool, spec, enforce_limits=False))
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    return ThreadState(values=dict(state.values or {}), next=list(state.next),
                       checkpoint_id=(state.config or {}).get("configurable", {}).get("checkpoint_id", ""),
                       metadata=dict(state.metadata or {}), read_with=spec.version)


def _from_checkpoint(latest: Any, metadata: dict) -> ThreadState:
    """A checkpoint's own view, for a version whose code is gone: its public channels, and
    the nodes whose trigger channel holds a write they have not seen (what LangGraph runs next)."""
    checkpoint = latest.checkpoint
    channels = checkpoint.get("channel_values", {})
    versions = checkpoint.get("channel_versions", {})
    seen = checkpoint.get("versions_seen", {})
    waiting = []
    for name, version in versions.items():
        if name.startswith(_TRIGGER):
            node = name.removeprefix(_TRIGGER)
            last = seen.get(node, {}).get(name)
            # A consumed trigger keeps its version but leaves channel_values (a pending one
            # stays there, holding None).
            if name in channels and (last is None or version > last):
                waiting.append(node)
    waiting.sort()
    values = {k: v for k, v in channels.items() if not k.startswith(("__", _TRIGGER))}
    return ThreadState(values=values, next=waiting, checkpoint_id=checkpoint.get("id", ""), metadata=metadata)


# -- whole snapshots ------------------------------------------------------------------------

def _config(thread_id: str, checkpoint_id: str = "") -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def _writer(registry: Any, pool: Any, graph_name: str, thread_id: str, checkpoint_id: str = ""):
    """(the checkpoint tuple, the spec of the version that wrote it or None when that version
    is no longer declared); (None, None) when the thread has no such checkpoint."""
    default = registry.get(graph_name)
    found = await saver_for(pool, default, enforce_limits=False).aget_tuple(_config(thread_id, checkpoint_id))
    if found is None:
        return None, None
    version = str((found.metadata or {}).get("graph_version") or default.version)
    try:
        return found, registry.get(graph_name, version)
    except NotFound:
        return found, None


def _snapshot_from_tuple(found: Any) -> StateSnapshot:
    """A snapshot from a checkpoint alone (its version's code is gone): values, next, ids, time."""
    state = _from_checkpoint(found, dict(found.metadata or {}))
    return StateSnapshot(values=state.values, next=tuple(state.next), config=found.config,
                         metadata=dict(found.metadata or {}), created_at=found.checkpoint.get("ts"),
                         parent_config=found.parent_config, tasks=(), interrupts=())


async def read_snapshot(registry: Any, pool: Any, graph_name: str, thread_id: str,
                        checkpoint_id: str = "") -> StateSnapshot | None:
    """The thread's StateSnapshot at its latest checkpoint, or at `checkpoint_id`, read with
    the graph version that wrote that checkpoint. None when the thread has no checkpoint;
    NOT_FOUND (CHECKPOINT_NOT_FOUND) for a checkpoint id the thread does not have."""
    found, spec = await _writer(registry, pool, graph_name, thread_id, checkpoint_id)
    if found is None:
        if checkpoint_id:
            raise NotFound(f"thread '{thread_id}' has no checkpoint '{checkpoint_id}'", code="CHECKPOINT_NOT_FOUND")
        return None
    if spec is None:
        return _snapshot_from_tuple(found)
    graph = registry.compiled(spec.name, spec.version, checkpointer=saver_for(pool, spec, enforce_limits=False))
    return await graph.aget_state(_config(thread_id, found.config["configurable"]["checkpoint_id"]))


def json_contains(doc: Any, pattern: Any) -> bool:
    """JSON containment as Postgres' jsonb @> has it (objects by key, arrays by element)."""
    if isinstance(pattern, dict):
        return isinstance(doc, dict) and all(k in doc and json_contains(doc[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(doc, list) and all(any(json_contains(d, p) for d in doc) for p in pattern)
    if isinstance(pattern, bool) or isinstance(doc, bool):
        return pattern is doc
    return doc == pattern


async def read_history(registry: Any, pool: Any, graph_name: str, thread_id: str, *, limit: int,
                       before: str = "", metadata: dict | None = None, checkpoint_id: str = "") -> list[StateSnapshot]:
    """The thread's checkpoints, newest first: at most `limit`, only those older than
    `before`, whose metadata contains `metadata`, starting at `checkpoint_id` (itself first)
    or the latest. All are read with the version that wrote the first one."""
    found, spec = await _writer(registry, pool, graph_name, thread_id, checkpoint_id)
    if found is None:
        if checkpoint_id:
            raise NotFound(f"thread '{thread_id}' has no checkpoint '{checkpoint_id}'", code="CHECKPOINT_NOT_FOUND")
        return []
    snapshots: list[StateSnapshot] = []
    if checkpoint_id:
        start = found.config["configurable"]["checkpoint_id"]
        # Checkpoint ids sort by time (uuid6), as the saver's `before` compares them.
        if (not before or start < before) and json_contains(dict(found.metadata or {}), metadata or {}):
            first = await read_snapshot(registry, pool, graph_name, thread_id, start)
            snapshots.append(first)
        before = start if not before or start < before else before
    if len(snapshots) >= limit:
        return snapshots[:limit]
    older = {"configurable": {"checkpoint_id": before}} if before else None
    left = limit - len(snapshots)
    if spec is None:
        saver = saver_for(pool, registry.get(graph_name), enforce_limits=False)
        snapshots += [_snapshot_from_tuple(t) async for t in saver.alist(
            _config(thread_id), filter=metadata or None, before=older, limit=left)]
        return snapshots
    graph = registry.compiled(spec.name, spec.version, checkpointer=saver_for(pool, spec, enforce_limits=False))
    snapshots += [s async for s in graph.aget_state_history(_config(thread_id), filter=metadata or None,
                                                            before=older, limit=left)]
    return snapshots


async def latest_values(registry: Any, pool: Any, graph_name: str, thread_id: str) -> dict[str, Any]:
    """The public channel values of the thread's latest checkpoint, as JSON (no graph is
    built: one read of the checkpoint). {} for a thread with no checkpoint."""
    if not graph_name:
        return {}
    saver = saver_for(pool, registry.get(graph_name), enforce_limits=False)
    found = await saver.aget_tuple(_config(thread_id))
    if found is None:
        return {}
    return jsonable(_from_checkpoint(found, {}).values)


def _checkpoint_of(config: Any) -> tuple[str, str]:
    configurable = (config or {}).get("configurable", {}) if isinstance(config, dict) else {}
    return str(configurable.get("checkpoint_id") or ""), str(configurable.get("checkpoint_ns") or "")


def _timestamp(text: Any) -> timestamp_pb2.Timestamp | None:
    if not text:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.fromisoformat(str(text)))
    return ts


def _interrupt(interrupt: Any, node: str, approvals: dict[str, Any]) -> thread_pb2.ThreadInterrupt:
    interrupt_id = str(getattr(interrupt, "id", "") or "")
    approval = approvals.get(interrupt_id)
    return thread_pb2.ThreadInterrupt(
        interrupt_id=interrupt_id, value=to_value(getattr(interrupt, "value", None)), node=node,
        approval_id=getattr(approval, "approval_id", "") if approval else "",
        run_id=getattr(approval, "run_id", "") if approval else "")


def snapshot_to_proto(snapshot: StateSnapshot | None, approvals: Iterable[Any] = ()) -> thread_pb2.ThreadSnapshot:
    """A graphmesh.v1 ThreadSnapshot (values as JSON: LangChain messages become their dicts).
    `approvals` (with interrupt_id, approval_id, run_id) name the approval of each interrupt
    the snapshot waits on. None (a thread with no checkpoint) is an empty snapshot."""
    if snapshot is None:
        return thread_pb2.ThreadSnapshot()
    by_interrupt = {a.interrupt_id: a for a in approvals}
    checkpoint_id, checkpoint_ns = _checkpoint_of(snapshot.config)
    parent_id, _ = _checkpoint_of(snapshot.parent_config)
    tasks, node_of = [], {}
    for task in snapshot.tasks:
        state = task.state
        ns = _checkpoint_of(state.config if isinstance(state, StateSnapshot) else state)[1]
        tasks.append(thread_pb2.ThreadTask(
            task_id=task.id, name=task.name, error=_error_text(task.error), checkpoint_ns=ns,
            interrupts=[_interrupt(i, task.name, by_interrupt) for i in task.interrupts]))
        node_of.update({getattr(i, "id", ""): task.name for i in task.interrupts})
    values = snapshot.values
    return thread_pb2.ThreadSnapshot(
        values=to_struct(values if isinstance(values, dict) else {"value": values} if values is not None else {}),
        next=list(snapshot.next), checkpoint_id=checkpoint_id, parent_checkpoint_id=parent_id,
        checkpoint_ns=checkpoint_ns, metadata=to_struct(dict(snapshot.metadata or {})),
        created_at=_timestamp(snapshot.created_at), tasks=tasks,
        interrupts=[_interrupt(i, node_of.get(getattr(i, "id", ""), ""), by_interrupt)
                    for i in getattr(snapshot, "interrupts", ())])


def _error_text(error: Any) -> str:
    if not error:
        return ""
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)


# -- writing --------------------------------------------------------------------------------

async def update_state(registry: Any, pool: Any, graph_name: str, thread_id: str, values: Any, *, as_node: str = "",
                       checkpoint_id: str = "", new_thread_version: str = "",
                       metadata: dict[str, Any] | None = None) -> tuple[str, Any]:
    """Writes `values` to the thread's state as node `as_node` (LangGraph's aupdate_state;
    "__end__" too), from its latest checkpoint or `checkpoint_id`, with the graph version
    that wrote that checkpoint (`new_thread_version` for a thread with none). The new
    checkpoint's metadata carries the version fields, as a run's checkpoints do, and
    `metadata`. Returns (the new checkpoint id, the spec it was written with). The caller
    makes sure no run holds the thread meanwhile.

    `pool` may be one connection instead (AsyncPostgresSaver takes either): the caller's,
    inside the transaction that holds the thread's row lock, so that the checkpoint (blobs,
    row and writes) commits or rolls back with what the caller writes there, and no second
    connection is taken while the lock is held."""
    found, spec = await _writer(registry, pool, graph_name, thread_id, checkpoint_id)
    if found is None and checkpoint_id:
        raise NotFound(f"thread '{thread_id}' has no checkpoint '{checkpoint_id}'", code="CHECKPOINT_NOT_FOUND")
    if found is not None and spec is None:
        written = (found.metadata or {}).get("graph_version")
        raise FailedPrecondition(
            f"thread '{thread_id}' was last written by version '{written}' of graph '{graph_name}', which this "
            "deployment no longer declares: its state cannot be updated with another version's schema; run it "
            "once (a migration carries it over) and update it then", code="CHECKPOINT_VERSION_UNDECLARED")
    if spec is None:
        spec = registry.get(graph_name, new_thread_version or None)
    graph = registry.compiled(spec.name, spec.version, checkpointer=saver_for(pool, spec))
    config = _config(thread_id, found.config["configurable"]["checkpoint_id"] if found is not None else "")
    # As the executor stamps a run's checkpoints: the checkpoint says which code wrote it.
    config["metadata"] = {**(metadata or {}), **spec.versions(), "graph": spec.name}
    try:
        written = await graph.aupdate_state(config, values, as_node=as_node or None)
    except StateTooLarge as exc:
        raise ResourceExhausted(f"state update refused: {exc}", code="STATE_TOO_LARGE") from None
    except SecretInState as exc:
        raise InvalidArgument(f"state update refused: {exc}", code="INVALID_STATE_UPDATE") from None
    except GraphmeshError:
        raise  # e.g. Postgres unreachable
    except (InvalidUpdateError, ValidationError, ValueError, TypeError) as exc:
        # The graph's own refusal: an unknown node, an ambiguous update, a value its state
        # (or a reducer, e.g. add_messages) rejects.
        raise InvalidArgument(f"state update refused by graph '{spec.name}': {type(exc).__name__}: {exc}",
                              code="INVALID_STATE_UPDATE") from None
    return written["configurable"]["checkpoint_id"], spec
