"""Reading a thread's state with the code that wrote it.

A thread's latest checkpoint names the graph version that wrote it (its metadata). Read
through another version (another state schema) its state comes back silently wrong:
fields missing, `next` empty. So the state is read with the writing version's graph;
when this deployment no longer declares that version, straight from the checkpoint
(the values it holds and the nodes its trigger channels still wait on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphmesh.errors import NotFound
from graphmesh.execution.saver import saver_for

__all__ = ["ThreadState", "read_thread"]

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
