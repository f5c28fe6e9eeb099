"""Numbering and publishing one execution's run events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from google.protobuf import json_format, struct_pb2
from nats.js import JetStreamContext

from graphmesh import secrets
from graphmesh.bus import make_event, publish_event, publish_event_pipelined
from graphmesh.bus.events import status_changed
from graphmesh.errors import Unavailable
from graphmesh.execution.stream_redaction import MessageStreamRedactor
from graphmesh.jsonvalues import jsonable
from graphmesh.loops import retry_for
from graphmesh.store import RunStatus
from graphmesh.v1 import run_pb2

log = logging.getLogger(__name__)

# A stream chunk's data over this many bytes is left out of its event (NATS refuses messages
# over its max_payload, 1 MiB by default, and the event carries more than the data).
MAX_CHUNK_BYTES = 768 * 1024


class EventSink:
    """Node and progress events are pipelined; `flush` waits for their acks, and runs
    before every status change so that a status is never stored ahead of the events it
    follows. An event whose ack does not come (its stream's leader died with it, NATS
    restarted, "no responders" during an election) is sent again until JetStream confirms
    it: the message id (run:sequence) makes a copy it already stored a duplicate it drops,
    so no event is lost and none is doubled."""

    MAX_IN_FLIGHT = 256
    # nats-py never fails a pipelined publish whose ack is lost: wait this long for acks,
    ACK_TIMEOUT_SECONDS = 5.0
    # then resend what is unconfirmed for up to this long before giving the run up (Unavailable).
    RESEND_SECONDS = 20.0

    def __init__(self, js: JetStreamContext, run_id: str, first_seq: int) -> None:
        self._js = js
        self._run_id = run_id
        self._in_flight: list[tuple[run_pb2.RunEvent, asyncio.Future]] = []
        self.next_seq = first_seq
        self._messages = MessageStreamRedactor()

    async def emit(self, **kind) -> None:
        if "node_finished" in kind and self._messages.holding:
            # The task's messages are complete: their held tails go out before it is reported.
            await self._emit_chunks("messages", self._messages.finish_task(kind["node_finished"].task_id))
        event = make_event(self._run_id, self.next_seq, **kind)
        self._in_flight.append((event, await publish_event_pipelined(self._js, event)))
        self.next_seq += 1
        if len(self._in_flight) >= self.MAX_IN_FLIGHT:
            await self._confirm()  # not flush(): a held message tail may still grow into a secret

    async def emit_chunk(self, mode: str, namespace: Sequence[str], chunk: Any) -> None:
        """One chunk of a LangGraph stream mode the run asked for, as JSON: LangChain messages
        as their dicts (a "messages" chunk is a [message, metadata] pair), known secrets
        redacted. A chunk too large for an event goes out as {"__graphmesh_omitted__":
        {"bytes": size, "limit": MAX_CHUNK_BYTES}} (the thread's state still has it).

        Once a secret is known, a "messages" chunk's text is redacted across the chunks of
        its message (graphmesh/execution/stream_redaction.py): a secret the model streams
        in pieces is still matched, at the cost of holding back a short tail."""
        if mode == "messages" and secrets.known():
            await self._emit_chunks(mode, self._messages.feed(namespace, jsonable(chunk)))
            return
        if mode == "tasks" and self._messages.holding and isinstance(chunk, dict) and "input" not in chunk:
            await self._emit_chunks("messages", self._messages.finish_task(str(chunk.get("id") or "")))
        await self._emit_chunk_data(mode, namespace, jsonable(chunk))

    async def _emit_chunks(self, mode: str, chunks: list[tuple[tuple[str, ...], Any]]) -> None:
        for namespace, data in chunks:
            await self._emit_chunk_data(mode, namespace, data)

    async def _emit_chunk_data(self, mode: str, namespace: Sequence[str], chunk: Any) -> None:
        data = struct_pb2.Value()
        json_format.ParseDict(secrets.redact_value(chunk), data)
        size = data.ByteSize()
        if size > MAX_CHUNK_BYTES:
            log.warning("run %s: a %s chunk of %d bytes is over the event limit; its data is left out",
                        self._run_id, mode, size)
            data = struct_pb2.Value()
            json_format.ParseDict({"__graphmesh_omitted__": {"bytes": size, "limit": MAX_CHUNK_BYTES}}, data)
        await self.emit(stream_chunk=run_pb2.StreamChunk(mode=mode, namespace=list(namespace), data=data))

    async def emit_status(self, status: RunStatus, previous: RunStatus) -> None:
        await self.emit(status_changed=status_changed(status, previous))

    async def flush(self) -> None:
        """Sends what message tails are still held (the run stops streaming: they can only
        end here), then waits until every event is confirmed."""
        if self._messages.holding:
            await self._emit_chunks("messages", self._messages.finish_all())
        await self._confirm()

    async def _confirm(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        if not in_flight:
            return
        done, late = await asyncio.wait([ack for _, ack in in_flight], timeout=self.ACK_TIMEOUT_SECONDS)
        for ack in late:
            ack.cancel()  # its event is sent again below
        unconfirmed = [event for event, ack in in_flight
                       if ack not in done or ack.cancelled() or ack.exception() is not None]
        for event in unconfirmed:
            await self._resend(event)

    async def _resend(self, event: run_pb2.RunEvent) -> None:
        try:
            await retry_for(lambda: publish_event(self._js, event), seconds=self.RESEND_SECONDS,
                            retry_on=lambda exc: True)
        except Exception as exc:
            raise Unavailable(f"NATS did not acknowledge event {event.sequence} of run {self._run_id}: "
                              f"{type(exc).__name__}") from None
