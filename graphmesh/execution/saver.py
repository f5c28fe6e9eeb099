"""The checkpointer the executor binds to each run: langgraph-checkpoint-postgres's
AsyncPostgresSaver, with a trace span around every checkpoint write, the graph's state
size limit, and a serializer that reads back only allow-listed types and never stores a
known secret.

State size (`limits.max_state_bytes`) is the checkpoint's channel values *as stored*: the
serialized blob of every channel that is stored as a blob, plus the UTF-8/JSON length of
the primitive values stored inline in the checkpoint row. Blobs are serialized for the
write anyway; the saver keeps the size of each channel's latest version, so a step costs
nothing extra, and a channel not written in this execution is serialized once to learn its
size. A checkpoint over the limit is not written: the saver raises StateTooLarge, and the
thread keeps its last checkpoint within the limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Sequence

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from graphmesh import secrets
from graphmesh.telemetry.tracing import tracer

log = logging.getLogger(__name__)

# How long a mutating node waits for the checkpoint before it to be written (a safety
# bound: the write normally lands within milliseconds; past this the node proceeds).
SETTLE_TIMEOUT_SECONDS = 30.0


class StateTooLarge(RuntimeError):
    """A step left the thread's serialized state over the graph's max_state_bytes."""

    def __init__(self, size: int, limit: int, step: int) -> None:
        super().__init__(f"state is {size} bytes after step {step}, over the limit max_state_bytes={limit}")
        self.size, self.limit, self.step = size, limit, step


class SecretInState(ValueError):
    """A value to be checkpointed holds a known secret inside an object it cannot redact."""


def allowlist(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """"module.Class" names as LangGraph's (module, name) msgpack allow-list keys."""
    return tuple(tuple(name.rsplit(".", 1)) for name in names)  # type: ignore[misc]


class GraphSerializer(JsonPlusSerializer):
    """LangGraph's serializer, restricted to LangGraph's safe types plus the graph's
    `serde_allowlist` when reading (anything else comes back as its plain data, never as
    an instance of the class named in the checkpoint), and redacting known secrets from
    whatever it writes."""

    def __init__(self, serde_allowlist: Sequence[str] = ()) -> None:
        # An empty allow-list means LangGraph's safe types only (strict), never "all".
        super().__init__(allowed_msgpack_modules=allowlist(serde_allowlist) or None)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = super().dumps_typed(obj)
        if secrets.contains_secret(data):
            kind, data = super().dumps_typed(secrets.redact_value(obj))
            if secrets.contains_secret(data):
                raise SecretInState(f"a value to be checkpointed holds a secret inside a {type(obj).__name__}, "
                                    "where it cannot be redacted; keep secrets out of graph state")
        return kind, data


def graph_serde(spec: Any) -> GraphSerializer:
    return GraphSerializer(getattr(spec, "serde_allowlist", ()) or ())


def saver_for(conn: Any, spec: Any, *, enforce_limits: bool = True) -> "TracedPostgresSaver":
    """The saver for a graph version: its serializer and (when enforcing) its state limit.
    Anything that reads a thread's state (GetThreadState, InvokeRun's result) should use
    this too, so it deserializes with the graph's allow-list."""
    limit = spec.limits.max_state_bytes if enforce_limits else 0
    return TracedPostgresSaver(conn, serde=graph_serde(spec), max_state_bytes=limit)


def _inline_size(value: Any) -> int:
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    return len(json.dumps(value))


class TracedPostgresSaver(AsyncPostgresSaver):
    def __init__(self, conn: Any, pipe: Any = None, serde: Any = None, *, max_state_bytes: int = 0) -> None:
        super().__init__(conn, pipe, serde if serde is not None else GraphSerializer())
        self.max_state_bytes = max_state_bytes
        self.too_large: StateTooLarge | None = None  # set once a checkpoint was refused
        self._sizes: dict[str, tuple[str, int]] = {}  # channel -> (version, serialized bytes)
        self._dumped: dict[tuple[str, str], tuple[str, bytes]] = {}  # serialized for the coming write
        # The highest step of a root checkpoint this saver loaded, wrote or refused, and
        # the nodes waiting for a step's checkpoint: (step, future).
        self._step: int | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []

    async def settled(self, step: int | None = None) -> None:
        """For a node of step `step`: waits until the checkpoint before it (step - 1) has
        been written or refused, then raises StateTooLarge if a checkpoint was refused.

        LangGraph writes a step's checkpoint in the background while the next step's
        nodes start (async durability), so a node with outside effects must wait here to
        be sure the state it follows was within the limit. A resumed execution loads the
        checkpoint its first nodes follow (aget_tuple), which counts as reached."""
        if step is not None and self.too_large is None and (self._step is None or self._step < step - 1):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((step - 1, waiter))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), SETTLE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("the checkpoint before step %s was not written within %g s; going on", step,
                            SETTLE_TIMEOUT_SECONDS)
        if self.too_large is not None:
            raise self.too_large

    def _reached(self, step: Any) -> None:
        if isinstance(step, int):
            self._step = step if self._step is None else max(self._step, step)
        waiting, self._waiters = self._waiters, []
        for wanted, waiter in waiting:
            if self.too_large is not None or (self._step is not None and wanted <= self._step):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._waiters.append((wanted, waiter))

    async def aget_tuple(self, config):
        found = await super().aget_tuple(config)
        if found is not None and not config["configurable"].get("checkpoint_ns"):
            self._reached((found.metadata or {}).get("step"))
        return found

    async def aput(self, config, checkpoint, metadata, new_versions):
        attrs = {"graphmesh.checkpoint_id": checkpoint["id"], "graphmesh.step": int(metadata.get("step", -1)),
                 "graphmesh.channels_written": len(new_versions)}
        try:
            with tracer.start_as_current_span("checkpoint.put", attributes=attrs) as span:
                if self.too_large is not None:
                    raise self.too_large  # the thread stays at its last checkpoint within the limit
                checkpoint = self._redacted(checkpoint)
                if self.max_state_bytes:
                    size = await self._state_size(checkpoint, new_versions)
                    span.set_attribute("graphmesh.state_bytes", size)
                    if size > self.max_state_bytes:
                        self._dumped.clear()
                        self.too_large = StateTooLarge(size, self.max_state_bytes, int(metadata.get("step", -1)))
                        raise self.too_large
                return await super().aput(config, checkpoint, metadata, new_versions)
        finally:  # written, refused or failed: nodes waiting for this step go on
            if not config["configurable"].get("checkpoint_ns"):
                self._reached(metadata.get("step"))

    async def aput_writes(self, config, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        attrs = {"graphmesh.task_id": task_id, "graphmesh.writes": len(writes)}
        with tracer.start_as_current_span("checkpoint.put_writes", attributes=attrs):
            return await super().aput_writes(config, writes, task_id, task_path)

    def _redacted(self, checkpoint):
        """Primitive channel values are stored inline in the checkpoint row, not through
        the serializer: redact known secrets there too."""
        if not secrets.known():
            return checkpoint
        values = checkpoint["channel_values"]
        if not any(isinstance(v, str) and secrets.contains_secret(v) for v in values.values()):
            return checkpoint
        return {**checkpoint, "channel_values": {k: secrets.redact(v) if isinstance(v, str) else v
                                                 for k, v in values.items()}}

    async def _state_size(self, checkpoint, new_versions) -> int:
        versions = checkpoint.get("channel_versions", {})
        total, to_dump = 0, {}
        for channel, value in checkpoint["channel_values"].items():
            if value is None or isinstance(value, (str, int, float, bool)):  # inline in the checkpoint row
                total += _inline_size(value)
                continue
            version = str(versions.get(channel, ""))
            known = self._sizes.get(channel)
            if known is not None and known[0] == version and channel not in new_versions:
                total += known[1]
            else:
                to_dump[channel] = (version, value)
        if to_dump:
            dumped = await asyncio.to_thread(
                lambda: {ch: (ver, self.serde.dumps_typed(v)) for ch, (ver, v) in to_dump.items()})
            for channel, (version, typed) in dumped.items():
                size = len(typed[1] or b"")
                self._sizes[channel] = (version, size)
                total += size
                if channel in new_versions:  # the write below stores exactly these bytes
                    self._dumped[(channel, str(new_versions[channel]))] = typed
        return total

    def _dump_blobs(self, thread_id, checkpoint_ns, values, versions):
        if not versions:
            return []
        rows = []
        for k, ver in versions.items():
            typed = self._dumped.pop((k, str(ver)), None)
            if typed is None:
                typed = self.serde.dumps_typed(values[k]) if k in values else ("empty", None)
            rows.append((thread_id, checkpoint_ns, k, str(ver), *typed))
        return rows
