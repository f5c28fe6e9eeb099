"""graphmesh's run events as the LangGraph stream modes a client asked for, and following a
run's event log to the point where the reference server would end its stream.

Sources per mode. A mode the run was created with (RunOptions.stream_modes) comes from the
worker's StreamChunk events, exactly as LangGraph yields it. For a mode the run was not
created with (a join_stream asking for more, a run created over gRPC, a resumed run: it
keeps the modes it was created with), what graphmesh's own events can give is shown instead:

    updates   {node: update} from node_finished; {"__interrupt__": [{value, id}]} per approval requested
    custom    from graphmesh's custom events
    tasks     task start ({id, name, input: null, triggers: []}) and result ({id, name, error, result, interrupts})
    values    once, when the stream ends, the thread's state (with "__interrupt__" at an interrupt)
    messages, debug, checkpoints: nothing without chunks

`events` (astream_events) is rebuilt: on_chain_start / on_chain_end per node, on_custom_event,
and on_chat_model_stream from the run's message chunks. Legacy `messages` becomes
messages/metadata, messages/partial and messages/complete with the message so far, as the
reference does (a reconnect in the middle of a message restarts its accumulation).

Where a stream ends: at COMPLETED, FAILED (after an `error` event) and CANCELLED; at
WAITING_FOR_APPROVAL only when that is where the run rests now (the reference ends its
stream at an interrupt; an older wait the run was resumed from is streamed through); at
PAUSED when the run is paused now.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import grpc

from graphmesh.v1 import review_service_pb2, run_pb2, thread_service_pb2
from graphmesh.v1 import run_service_pb2 as pb
from services.gateway.context import CALL_TIMEOUT
from services.gateway.jsonio import plain, struct_or_none
from services.gateway.run_shapes import TERMINAL, error_json
from services.gateway.sse import Position, frame, frames

log = logging.getLogger(__name__)

RESTING = TERMINAL | {run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL, run_pb2.RUN_STATUS_PAUSED}
# A broken StreamRun (an api replica going away) is reopened after the last event this many times.
STREAM_RETRIES = 5
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


def interrupt_json(event: run_pb2.RunEvent) -> dict[str, Any]:
    requested = event.approval_requested
    return {"value": plain(requested.payload) if requested.HasField("payload") else None,
            "id": requested.interrupt_id}


def _suffix(namespace) -> str:
    return "|" + "|".join(namespace) if namespace else ""


@dataclass
class StreamView:
    """The SSE events one stream shows for each graphmesh event: `modes` as the client named
    them, `carried` the LangGraph modes the run's worker publishes as chunks."""

    modes: list[str]
    carried: set[str]
    _messages: dict[str, Any] = field(default_factory=dict)

    def wants(self, mode: str) -> bool:
        return mode in self.modes

    def synthesized(self, mode: str) -> bool:
        """Whether `mode` is asked for but has to be rebuilt from graphmesh's own events."""
        return mode in self.modes and mode not in self.carried

    @property
    def values_at_rest(self) -> bool:
        return self.synthesized("values")

    def translate(self, event: run_pb2.RunEvent) -> list[tuple[str, Any]]:
        kind = event.WhichOneof("kind")
        if kind == "stream_chunk":
            return self._chunk(event.stream_chunk)
        if kind == "node_started":
            return self._started(event.node_started)
        if kind == "node_finished":
            return self._finished(event.node_finished)
        if kind == "custom":
            data = plain(event.custom.data) if event.custom.HasField("data") else None
            out = [("custom", data)] if self.synthesized("custom") else []
            if self.wants("events"):
                out.append(("events", _event("on_custom_event", "custom", "", {"data": data})))
            return out
        if kind == "approval_requested" and self.synthesized("updates"):
            return [("updates", {"__interrupt__": [interrupt_json(event)]})]
        if kind == "status_changed" and event.status_changed.status == run_pb2.RUN_STATUS_FAILED:
            return [("error", error_json(event.status_changed.error))]
        return []

    def _chunk(self, chunk: run_pb2.StreamChunk) -> list[tuple[str, Any]]:
        wanted = (("messages-tuple", "messages", "events") if chunk.mode == "messages" else (chunk.mode,))
        if not any(self.wants(mode) for mode in wanted):
            return []  # decoded only for a client that shows it (a join may ask for fewer modes)
        data = struct_or_none(chunk, "data")
        suffix = _suffix(chunk.namespace)
        if chunk.mode == "debug" and isinstance(data, dict) and data.get("type") == "checkpoint":
            data = {**data, "payload": debug_checkpoint(data.get("payload"))}
        if chunk.mode != "messages":
            return [(chunk.mode + suffix, data)]
        out: list[tuple[str, Any]] = []
        if self.wants("messages-tuple"):
            out.append(("messages" + suffix, data))
        if self.wants("messages"):
            out.extend(self._legacy_messages(data))
        if self.wants("events") and isinstance(data, list) and len(data) == 2:
            message, metadata = data
            out.append(("events", _event("on_chat_model_stream", (metadata or {}).get("ls_model_name", "chat_model"),
                                         (message or {}).get("id", ""), {"chunk": message}, metadata)))
        return out

    def _legacy_messages(self, data: Any) -> list[tuple[str, Any]]:
        """messages/metadata the first time a message is seen, then messages/partial (a chunk:
        the message so far) or messages/complete, as the reference's legacy messages mode."""
        from langchain_core.messages import (  # the gateway needs LangChain only for this mode
            AIMessageChunk,
            BaseMessageChunk,
            ToolMessageChunk,
            convert_to_messages,
        )

        if not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], dict):
            return []
        raw, metadata = data
        kind = str(raw.get("type", "")).lower()
        try:
            if "chunk" in kind:
                cls = ToolMessageChunk if "tool" in kind else AIMessageChunk if "ai" in kind else BaseMessageChunk
                message = cls(**raw)
            else:
                message = convert_to_messages([raw])[0]
        except Exception as exc:  # a message LangChain cannot read back: shown as it came
            log.debug("legacy messages: cannot read %s: %s", kind, exc)
            return [("messages/complete", [raw])]
        out: list[tuple[str, Any]] = []
        key = message.id or ""
        if key in self._messages and isinstance(message, BaseMessageChunk):
            self._messages[key] = self._messages[key] + message
        else:
            if key not in self._messages:
                out.append(("messages/metadata", {key: {"metadata": metadata}}))
            self._messages[key] = message
        name = "messages/partial" if isinstance(message, BaseMessageChunk) else "messages/complete"
        return [*out, (name, [self._messages[key].model_dump()])]

    def _started(self, started: run_pb2.NodeStarted) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self.synthesized("tasks"):
            out.append(("tasks", {"id": started.task_id, "name": started.node, "input": None, "triggers": []}))
        if self.wants("events"):
            out.append(("events", _event("on_chain_start", started.node, started.task_id, {},
                                         {"langgraph_node": started.node, "langgraph_step": started.step})))
        return out

    def _finished(self, finished: run_pb2.NodeFinished) -> list[tuple[str, Any]]:
        update = plain(finished.update) if finished.HasField("update") else None
        out: list[tuple[str, Any]] = []
        if self.synthesized("updates"):
            out.append(("updates", {finished.node: update}))
        if self.synthesized("tasks"):
            out.append(("tasks", {"id": finished.task_id, "name": finished.node, "error": None,
                                  "result": [[k, v] for k, v in (update or {}).items()], "interrupts": []}))
        if self.wants("events"):
            out.append(("events", _event("on_chain_end", finished.node, finished.task_id, {"output": update},
                                         {"langgraph_node": finished.node, "langgraph_step": finished.step})))
        return out


def _checkpoint_of(config: Any) -> dict[str, Any] | None:
    configurable = (config or {}).get("configurable") if isinstance(config, dict) else None
    if not configurable:
        return None
    return {"thread_id": configurable.get("thread_id"), "checkpoint_ns": configurable.get("checkpoint_ns", ""),
            "checkpoint_id": configurable.get("checkpoint_id"), "checkpoint_map": configurable.get("checkpoint_map")}


def debug_checkpoint(payload: Any) -> Any:
    """A debug checkpoint payload as the reference sends it: `checkpoint` and
    `parent_checkpoint` beside its configs, and each task's state config as its checkpoint."""
    if not isinstance(payload, dict):
        return payload
    tasks = []
    for task in payload.get("tasks") or []:
        if isinstance(task, dict) and isinstance(task.get("state"), dict) and task["state"].get("configurable"):
            task = {**{k: v for k, v in task.items() if k != "state"}, "checkpoint": task["state"]["configurable"]}
        tasks.append(task)
    return {**payload, "checkpoint": _checkpoint_of(payload.get("config")),
            "parent_checkpoint": _checkpoint_of(payload.get("parent_config")), "tasks": tasks}


def _event(kind: str, name: str, run_id: str, data: dict, metadata: dict | None = None) -> dict[str, Any]:
    """An astream_events (v2) event as far as graphmesh's events tell it."""
    return {"event": kind, "name": name, "run_id": run_id, "tags": [], "metadata": metadata or {}, "data": data,
            "parent_ids": []}


# -- following a run's event log --------------------------------------------------------


@dataclass
class Follower:
    """Reads one run's graphmesh events after sequence `start` and stops where the stream
    ends (above). `runs`: RunService; `threads`: ThreadService (whose interrupts say which
    wait is the current one); `review`: ReviewService or None; `metadata`: the caller's
    credentials."""

    runs: Any
    threads: Any
    review: Any
    metadata: tuple
    run_id: str
    thread_id: str
    start: int = 0
    last: int = field(init=False)  # the last sequence read
    resting: int = field(init=False, default=0)  # the status the run rests in at the end (0 while it goes on)
    interrupts: list[dict] = field(init=False, default_factory=list)  # the current wait's, once reached

    def __post_init__(self) -> None:
        self.last = self.start

    async def events(self) -> AsyncIterator[run_pb2.RunEvent]:
        batch: dict[str, run_pb2.RunEvent] = {}  # approval requests since the last other event
        only_requests = True  # every event read so far was an approval request
        retries = 0
        while True:
            call = self.runs.StreamRun(pb.StreamRunRequest(run_id=self.run_id, after_sequence=self.last),
                                       metadata=self.metadata)
            try:
                async for response in call:
                    retries = 0
                    event = response.event
                    if event.sequence <= self.last:
                        continue  # a replay overlapping what was read (a reopened stream)
                    self.last = event.sequence
                    kind = event.WhichOneof("kind")
                    if kind == "approval_requested":
                        batch[event.approval_requested.approval_id] = event
                        yield event
                        continue
                    if kind == "status_changed" and await self._ends_here(event, batch, only_requests):
                        self.resting = event.status_changed.status
                        yield event
                        return
                    batch, only_requests = {}, False
                    yield event
                return  # StreamRun ended by itself (after a terminal event it could not see again)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRY_CODES or retries >= STREAM_RETRIES:
                    raise
                retries += 1
                log.info("run %s: event stream broke (%s); reopening after %d", self.run_id, exc.code().name,
                         self.last)
                await asyncio.sleep(0.2 * retries)
            finally:
                call.cancel()

    async def _ends_here(self, event: run_pb2.RunEvent, batch: dict, only_requests: bool) -> bool:
        status = event.status_changed.status
        if status in TERMINAL:
            return True
        if status not in (run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL, run_pb2.RUN_STATUS_PAUSED):
            return False
        run = (await self.runs.GetRun(pb.GetRunRequest(run_id=self.run_id), metadata=self.metadata)).run
        if run.status != status:
            return False  # the run has left this rest since: stream on through it
        if status == run_pb2.RUN_STATUS_PAUSED:
            return True
        pending = await self.pending_interrupts()
        if not pending:
            return True  # nothing says which wait is open: this one, where the run waits
        if not set(pending) <= set(batch) and only_requests and self.start > 0:
            # The stream began inside this wait's requests: read the ones before it again.
            batch = await self._requests_before(event.sequence)
        if set(pending) <= set(batch):
            self.interrupts = [interrupt_json(batch[a]) for a in batch if a in pending]
            return True
        return False  # an earlier wait of a run that waits again later

    async def pending_interrupts(self) -> dict[str, dict]:
        """The run's open approvals (approval id -> LangGraph interrupt): from its thread, else
        from the review tier."""
        thread = (await self.threads.GetThread(thread_service_pb2.GetThreadRequest(thread_id=self.thread_id),
                                               metadata=self.metadata)).thread
        pending = {i.approval_id: {"value": struct_or_none(i, "value"), "id": i.interrupt_id}
                   for i in thread.interrupts if i.approval_id and (not i.run_id or i.run_id == self.run_id)}
        if pending or self.review is None:
            return pending
        try:
            approvals = (await self.review.ListApprovals(review_service_pb2.ListApprovalsRequest(
                run_id=self.run_id, statuses=[review_service_pb2.APPROVAL_STATUS_PENDING], page_size=1000),
                metadata=self.metadata)).approvals
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            return {}
        return {a.approval_id: {"value": plain(a.payload), "id": a.interrupt_id} for a in approvals}

    async def _requests_before(self, sequence: int) -> dict[str, run_pb2.RunEvent]:
        """The approval requests right before event `sequence` (one wait's), read again from the log."""
        found: dict[str, run_pb2.RunEvent] = {}
        call = self.runs.StreamRun(pb.StreamRunRequest(run_id=self.run_id, after_sequence=0), metadata=self.metadata)
        try:
            async for response in call:
                event = response.event
                if event.sequence >= sequence:
                    break
                if event.WhichOneof("kind") == "approval_requested":
                    found[event.approval_requested.approval_id] = event
                else:
                    found = {}
        finally:
            call.cancel()
        return found


# -- what a stream or a wait shows ---------------------------------------------------------


async def sse_events(gw, md: tuple, run: run_pb2.Run, thread_id: str, view: StreamView, position: Position, *,
                     metadata_event: bool, on_rest: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """The run's events after `position` as SSE, `metadata` first when asked, ending where
    the reference's stream would end (events.py). on_rest: told the status the run rests in
    once the stream reached it."""
    if metadata_event:
        yield frame("metadata", {"run_id": run.run_id, "attempt": run.attempt}, str(position.after))
    follower = Follower(gw.runs, gw.threads, gw.review, md, run.run_id, thread_id, start=position.after)
    skip = position.skip
    try:
        async for event in follower.events():
            out = view.translate(event)
            if follower.resting and view.values_at_rest and follower.resting != run_pb2.RUN_STATUS_FAILED:
                out = [("values", await state_at_rest(gw, md, thread_id, follower)), *out]
            if out:
                chunk = frames(event.sequence, out, skip if event.sequence == position.after + 1 else 0)
                if chunk:
                    yield chunk
        if follower.resting and on_rest is not None:
            on_rest(follower.resting)
    except grpc.aio.AioRpcError as exc:
        yield frame("error", {"error": exc.code().name, "message": exc.details() or "the event stream failed"})


async def state_at_rest(gw, md: tuple, thread_id: str, follower: Follower) -> Any:
    """The thread's values where the run rests, with "__interrupt__" (LangGraph's
    [{value, id}]) when it waits at an interrupt, as the reference's last values chunk."""
    try:
        state = await gw.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=CALL_TIMEOUT,
                                             metadata=md)
        values = plain(state.values) if state.HasField("values") else {}
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            raise
        values = {}  # a run that ended before its thread had any state
    if follower.resting == run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL:
        interrupts = follower.interrupts or list((await follower.pending_interrupts()).values())
        values = {**(values if isinstance(values, dict) else {}), "__interrupt__": interrupts}
    return values


async def run_result(gw, md: tuple, run: run_pb2.Run, thread_id: str, after: int = 0, *,
                     on_rest: Callable[[int], None] | None = None) -> Any:
    """What /wait and /join answer once the run rests: the thread's values (with
    "__interrupt__" at an interrupt), or {"__error__": {error, message}} for a failed run.
    on_rest: told the status the run rests in."""
    follower = Follower(gw.runs, gw.threads, gw.review, md, run.run_id, thread_id, start=after)
    failed: run_pb2.RunError | None = None
    if run.status in TERMINAL:
        follower.resting = run.status
        failed = run.error if run.status == run_pb2.RUN_STATUS_FAILED else None
    else:
        async for event in follower.events():
            if event.WhichOneof("kind") == "status_changed" and event.status_changed.status == run_pb2.RUN_STATUS_FAILED:
                failed = event.status_changed.error
        if not follower.resting:  # the log ended without the rest being seen: ask the record
            run = (await gw.runs.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=CALL_TIMEOUT,
                                        metadata=md)).run
            follower.resting = run.status
            failed = run.error if run.status == run_pb2.RUN_STATUS_FAILED else None
    if on_rest is not None:
        on_rest(follower.resting)
    if failed is not None:
        return {"__error__": error_json(failed)}
    return await state_at_rest(gw, md, thread_id, follower)


async def decision_sequence(runs: Any, metadata: tuple, run_id: str, approval_ids: set[str]) -> int:
    """The sequence of the first approval_decided event of one of `approval_ids` (where the
    run resumed from them), or of the run leaving its wait when that event is missing."""
    call = runs.StreamRun(pb.StreamRunRequest(run_id=run_id, after_sequence=0), metadata=metadata)
    requested: set[str] = set()
    waited = False
    try:
        async for response in call:
            event = response.event
            kind = event.WhichOneof("kind")
            if kind == "approval_decided" and event.approval_decided.approval_id in approval_ids:
                return event.sequence
            if kind == "approval_requested" and event.approval_requested.approval_id in approval_ids:
                requested.add(event.approval_requested.approval_id)
            if kind == "status_changed":
                changed = event.status_changed
                if changed.status == run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL and requested:
                    waited = True
                elif waited and changed.previous_status == run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL:
                    return event.sequence
                if changed.status in TERMINAL:
                    return event.sequence
    finally:
        call.cancel()
    return 0


__all__ = ["Follower", "RESTING", "StreamView", "TERMINAL", "decision_sequence", "interrupt_json", "run_result",
           "sse_events", "state_at_rest"]
