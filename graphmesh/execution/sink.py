"""Numbering and publishing one execution's run events."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from graphmesh.bus import make_event, publish_event_pipelined
from graphmesh.bus.events import status_changed
from graphmesh.errors import Unavailable
from graphmesh.store import RunStatus


class EventSink:
    """Node and progress events are pipelined; `flush` waits for their acks, and runs
    before every status change so that a status is never stored ahead of the events it
    follows."""

    MAX_IN_FLIGHT = 256
    # nats-py never fails a pipelined publish whose ack is lost (e.g. NATS restarted).
    ACK_TIMEOUT_SECONDS = 10.0

    def __init__(self, js: JetStreamContext, run_id: str, first_seq: int) -> None:
        self._js = js
        self._run_id = run_id
        self._in_flight: list[asyncio.Future] = []
        self.next_seq = first_seq

    async def emit(self, **kind) -> None:
        event = make_event(self._run_id, self.next_seq, **kind)
        self._in_flight.append(await publish_event_pipelined(self._js, event))
        self.next_seq += 1
        if len(self._in_flight) >= self.MAX_IN_FLIGHT:
            await self.flush()

    async def emit_status(self, status: RunStatus, previous: RunStatus) -> None:
        await self.emit(status_changed=status_changed(status, previous))

    async def flush(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        if not in_flight:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*in_flight), self.ACK_TIMEOUT_SECONDS)
        except TimeoutError:
            raise Unavailable(f"NATS did not acknowledge run {self._run_id}'s events") from None
