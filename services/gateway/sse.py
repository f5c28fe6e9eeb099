"""Server-Sent Events as the reference server frames them, and the long responses of the
gateway (streams, waits) with their heartbeats and their client's disconnect.

Event ids are graphmesh's per-run event sequence, so `Last-Event-ID: N` resumes with
StreamRun(after_sequence=N) through any replica. When one graphmesh event becomes several
SSE events (a legacy `messages` chunk: messages/metadata then messages/partial), they carry
"N:0", "N:1", ... and the last one "N", so a reconnect after any of them neither repeats nor
skips one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.gateway.errors import HTTPError
from services.gateway.jsonio import dumps

log = logging.getLogger(__name__)

SEP = b"\r\n"
HEARTBEAT = b": heartbeat" + SEP + SEP


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE event: `event:`, `data:` (JSON on one line) and `id:` when given."""
    name = event.replace("\r", "").replace("\n", "")
    out = b"event: " + name.encode() + SEP + b"data: " + dumps(data).encode() + SEP
    if event_id is not None:
        out += b"id: " + event_id.encode() + SEP
    return out + SEP


def frames(sequence: int, events: list[tuple[str, Any]], skip: int = 0) -> bytes:
    """The SSE events one graphmesh event became, with the ids described above; the first
    `skip` left out (a client that reconnected inside them has them)."""
    last = len(events) - 1
    return b"".join(frame(name, data, str(sequence) if i == last else f"{sequence}:{i}")
                    for i, (name, data) in enumerate(events) if i >= skip)


@dataclass(frozen=True)
class Position:
    """Where a stream (re)starts: after graphmesh event `after`, skipping the first `skip`
    SSE events of the one after it (those a client already received)."""

    after: int = 0
    skip: int = 0


def parse_last_event_id(value: str | None) -> Position | None:
    """A Last-Event-ID header as this gateway wrote it ("N" or "N:i"); None when absent, or
    "-1": the JS SDK's useStream rejoins a run it finds on load with -1, meaning the whole
    stream, metadata first (as the reference server reads it)."""
    if value is None or not value.strip() or value.strip() == "-1":
        return None
    text = value.strip()
    head, _, part = text.partition(":")
    try:
        sequence = int(head)
        index = int(part) if part else None
    except ValueError:
        raise HTTPError(422, f"Last-Event-ID {text[:40]!r} is not an event id of this server (a number)") from None
    if not 0 <= sequence < 2**63 or (index is not None and not 0 <= index < 2**31):
        raise HTTPError(422, f"Last-Event-ID {text[:40]!r} is not an event id of this server")
    if index is None:
        return Position(after=sequence)
    # Events of graphmesh event `sequence` up to index `index` were received: resume inside it.
    return Position(after=sequence - 1, skip=index + 1)


class Disconnected(Exception):
    """Raised out of the ASGI call to drop the connection without ending the body (a wait
    cut short by a stopping gateway): the client sees a broken response and reconnects."""


class LongResponse(Response):
    """A streamed body with heartbeats every `interval` seconds, ended early when the client
    disconnects (then `on_disconnect` runs, e.g. to cancel the run) or the gateway stops.

    `end_on_stop`: how a stopping gateway ends the response: True ends the body cleanly (an
    SSE client checks the run and reconnects), False drops the connection (a JSON body cut
    short must not parse)."""

    def __init__(self, body: AsyncIterator[bytes], *, media_type: str, heartbeat: bytes, interval: float,
                 stopping: asyncio.Event | None = None, on_disconnect: Callable[[], Awaitable[None]] | None = None,
                 on_close: Callable[[], None] | None = None, end_on_stop: bool = True,
                 headers: Mapping[str, str] | None = None) -> None:
        # As StreamingResponse: no body attribute, so no Content-Length header.
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(dict(headers or {}))
        self._body = body
        self._heartbeat = heartbeat
        self._interval = max(0.05, interval)
        self._stopping = stopping
        self._on_disconnect = on_disconnect
        self._on_close = on_close
        self._end_on_stop = end_on_stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lock = asyncio.Lock()
        dropped = False
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

            async def emit(chunk: bytes) -> None:
                async with lock:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

            async def pump() -> None:
                try:
                    async for chunk in self._body:
                        await emit(chunk)
                finally:
                    await self._body.aclose()

            async def beat() -> None:
                while True:
                    await asyncio.sleep(self._interval)
                    await emit(self._heartbeat)

            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            tasks = {asyncio.create_task(pump(), name="body"), asyncio.create_task(gone(), name="disconnect")}
            beating = asyncio.create_task(beat(), name="heartbeat")
            if self._stopping is not None:
                tasks.add(asyncio.create_task(self._stopping.wait(), name="stopping"))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (*tasks, beating):
                    task.cancel()
                await asyncio.gather(*tasks, beating, return_exceptions=True)
            finished = {t.get_name(): t for t in done}
            if "disconnect" in finished:
                dropped = True
                if self._on_disconnect is not None:
                    await self._on_disconnect()
                return
            if "stopping" in finished and "body" not in finished and not self._end_on_stop:
                raise Disconnected("the gateway is stopping")
            body = finished.get("body")
            if body is not None and not body.cancelled() and body.exception() is not None:
                raise body.exception()
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            dropped = True  # the client went away while we were writing to it
            if self._on_disconnect is not None:
                await self._on_disconnect()
        finally:
            if self._on_close is not None:
                self._on_close()
            if dropped:
                log.debug("%s: client disconnected", scope.get("path"))


def sse_response(body: AsyncIterator[bytes], *, interval: float, stopping: asyncio.Event | None = None,
                 on_disconnect: Callable[[], Awaitable[None]] | None = None,
                 on_close: Callable[[], None] | None = None,
                 headers: Mapping[str, str] | None = None) -> LongResponse:
    return LongResponse(body, media_type="text/event-stream", heartbeat=HEARTBEAT, interval=interval,
                        stopping=stopping, on_disconnect=on_disconnect, on_close=on_close,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def json_wait_response(body: AsyncIterator[bytes], *, interval: float, stopping: asyncio.Event | None = None,
                       on_disconnect: Callable[[], Awaitable[None]] | None = None,
                       on_close: Callable[[], None] | None = None,
                       headers: Mapping[str, str] | None = None) -> LongResponse:
    """A JSON body that takes as long as the run: newlines keep the connection open meanwhile
    (JSON parsers skip leading whitespace), as the reference's /wait and /join do."""
    return LongResponse(body, media_type="application/json", heartbeat=b"\n", interval=interval,
                        stopping=stopping, on_disconnect=on_disconnect, on_close=on_close, end_on_stop=False,
                        headers=headers)


__all__ = ["HEARTBEAT", "Disconnected", "LongResponse", "Position", "frame", "frames", "json_wait_response",
           "parse_last_event_id", "sse_response"]
