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

Fenced by the run's lease. A saver bound to a claim (`fence`: the run id and epoch; the
executor binds one for every run it executes, in a worker or in the api) writes each
checkpoint, its blobs and each task's pending writes in one transaction that first locks
the run's row and checks the lease (graphmesh/store/leases.py). An execution that lost its
run (it was paused past its lease and another worker took it over) cannot write: the write
raises LeaseLost and the stale execution stops, so the thread's state is only ever what
the current holder wrote. Readers (GetThreadState, retention, InvokeRun's result) use an
unbound saver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Sequence

from langgraph.checkpoint.postgres import _ainternal
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg.rows import dict_row

from graphmesh import secrets
from graphmesh.errors import ExecutionError, Unavailable
from graphmesh.store.leases import LeaseFence, hold
from graphmesh.store.runs import LeaseLost
from graphmesh.telemetry.tracing import tracer

log = logging.getLogger(__name__)

# How long a mutating node waits for the checkpoint before it to be written (a safety
# bound: the write normally lands within milliseconds; past this the node proceeds).
SETTLE_TIMEOUT_SECONDS = 30.0


class StateTooLarge(ExecutionError, RuntimeError):
    """A step left the thread's serialized state over the graph's max_state_bytes."""

    run_error_code = "STATE_TOO_LARGE"

    def __init__(self, size: int, limit: int, step: int) -> None:
        super().__init__(f"state is {size} bytes after step {step}, over the limit max_state_bytes={limit}")
        self.size, self.limit, self.step = size, limit, step


class SecretInState(ExecutionError, ValueError):
    """A value to be checkpointed holds a known secret inside an object it cannot redact.
    Raised by a checkpoint write, outside any node: the run fails (GRAPH_ERROR)."""

    run_error_code = "GRAPH_ERROR"


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


def saver_for(conn: Any, spec: Any, *, enforce_limits: bool = True,
              fence: LeaseFence | None = None) -> "TracedPostgresSaver":
    """The saver for a graph version: its serializer and (when enforcing) its state limit.
    Anything that reads a thread's state (GetThreadState, InvokeRun's result) should use
    this too, so it deserializes with the graph's allow-list. `fence`: the claim whose
    lease every write must still hold (an execution's saver)."""
    limit = spec.limits.max_state_bytes if enforce_limits else 0
    return TracedPostgresSaver(conn, serde=graph_serde(spec), max_state_bytes=limit, fence=fence)


def _inline_size(value: Any) -> int:
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    return len(json.dumps(value))


class TracedPostgresSaver(AsyncPostgresSaver):
    def __init__(self, conn: Any, pipe: Any = None, serde: Any = None, *, max_state_bytes: int = 0,
                 fence: LeaseFence | None = None) -> None:
        if fence is not None and pipe is not None:
            raise ValueError("a fenced saver writes in transactions of its own; it takes no pipeline")
        super().__init__(conn, pipe, serde if serde is not None else GraphSerializer())
        self.max_state_bytes = max_state_bytes
        self.fence = fence
        # Called when the fence refuses a write (the executor stops the execution at once,
        # as when a lease renewal finds the run taken over).
        self.on_lease_lost: Callable[[], None] | None = None
        self.too_large: StateTooLarge | None = None  # set once a checkpoint was refused
        # Set once a root checkpoint could not be written (Postgres away, the lease lost): a
        # node with outside effects must not start after it.
        self.write_failed: Exception | None = None
        self._sizes: dict[str, tuple[str, int]] = {}  # channel -> (version, serialized bytes)
        self._dumped: dict[tuple[str, str], tuple[str, bytes]] = {}  # serialized for the coming write
        # The highest step of a root checkpoint this saver loaded, wrote or refused, and
        # the nodes waiting for a step's checkpoint: (step, future).
        self._step: int | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []

    async def settled(self, step: int | None = None) -> None:
        """For a node of step `step`: waits until the checkpoint before it (step - 1) has
        been written or refused, then raises StateTooLarge if a checkpoint was refused, or
        Unavailable if one could not be written (the run is then redelivered and resumes
        from its last written checkpoint, so the node never runs ahead of its state).

        LangGraph writes a step's checkpoint in the background while the next step's
        nodes start (async durability), so a node with outside effects must wait here to
        be sure the state it follows was within the limit. A resumed execution loads the
        checkpoint its first nodes follow (aget_tuple), which counts as reached."""
        stopped = self.too_large is not None or self.write_failed is not None
        if step is not None and not stopped and (self._step is None or self._step < step - 1):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((step - 1, waiter))
            try:
                await asyncio.wait_for(asyncio.shield(waiter), SETTLE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("the checkpoint before step %s was not written within %g s; going on", step,
                            SETTLE_TIMEOUT_SECONDS)
        if self.too_large is not None:
            raise self.too_large
        if self.write_failed is not None:
            raise Unavailable(f"a checkpoint before step {step} could not be written "
                              f"({type(self.write_failed).__name__}); a node with outside effects does not start")

    def _reached(self, step: Any) -> None:
        if isinstance(step, int):
            self._step = step if self._step is None else max(self._step, step)
        waiting, self._waiters = self._waiters, []
        for wanted, waiter in waiting:
            if self.too_large is not None or self.write_failed is not None or \
                    (self._step is not None and wanted <= self._step):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._waiters.append((wanted, waiter))

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        """AsyncPostgresSaver opens every write (aput: blobs and checkpoint; aput_writes;
        adelete_thread) with `pipeline=True` and every read without. Under a fence, a write
        runs in one transaction whose last statement before COMMIT holds the run's lease
        (leases.hold): the check and the write commit together, or LeaseLost is raised and
        the transaction is rolled back. Checking last keeps the run's row locked only for
        the check and the commit, never while the write waits (e.g. for a thread to
        serialize blobs)."""
        if self.fence is None or not pipeline:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.lock, _ainternal.get_connection(self.conn) as conn:
            async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                yield cur
                try:
                    await hold(cur, self.fence)
                except LeaseLost as exc:
                    log.warning("%s", exc.message)
                    if self.on_lease_lost is not None:
                        self.on_lease_lost()
                    raise

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
        except StateTooLarge:
            raise
        except Exception as exc:
            if not config["configurable"].get("checkpoint_ns"):
                self.write_failed = self.write_failed or exc
            raise
        finally:  # written, refused or failed: nodes waiting for this step go on (and check why)
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
