"""Live run events for StreamRun: one core-NATS subscription per api process, fanned out
to every open stream, with JetStream as the replay log.

A stream first replays what JetStream holds after the client's sequence, then follows
the live feed. Core delivery is at-most-once, so a gap in the live sequence (or a quiet
spell) triggers another replay; events are yielded strictly in order, each once.

A gap that the replay cannot fill is an event that is late (another process published it
after later ones) or lost (its publisher died between commit and publish). It is stepped
over only when it has been open for a grace period by this process's own clock, the
JetStream log still lacks it, and the caller's `gap_lost` check (StreamRun asks Postgres)
agrees that nothing will fill it; until then the events behind it wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from graphmesh.bus.streams import EVENT_SUBJECT_PREFIX, EVENTS_STREAM, event_subject
from graphmesh.v1 import run_pb2

# How long a gap stays open (measured here, on a monotonic clock) before it may be skipped.
GAP_GRACE_SECONDS = 5.0
# (missing sequence, seconds the gap has been open) -> may it be stepped over?
GapCheck = Callable[[int, float], Awaitable[bool]]


class _Holding:
    """Yielded instead of None for a quiet spell while events wait behind a gap: the caller
    may check on the run, but must not conclude that it has seen everything there is."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "HOLDING"


HOLDING = _Holding()


def _parse(data: bytes) -> run_pb2.RunEvent:
    event = run_pb2.RunEvent()
    event.ParseFromString(data)
    return event


class EventHub:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._listeners: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._prefix_len = len(EVENT_SUBJECT_PREFIX) + 1

    async def start(self) -> None:
        await self._nc.subscribe(f"{EVENT_SUBJECT_PREFIX}.>", cb=self._deliver)

    async def _deliver(self, msg: Msg) -> None:
        for queue in self._listeners.get(msg.subject[self._prefix_len:], ()):
            queue.put_nowait(msg.data)

    @asynccontextmanager
    async def _listen(self, run_id: str) -> AsyncIterator[asyncio.Queue]:
        queue: asyncio.Queue = asyncio.Queue()
        self._listeners[run_id].add(queue)
        try:
            yield queue
        finally:
            self._listeners[run_id].discard(queue)
            if not self._listeners[run_id]:
                del self._listeners[run_id]

    async def events(
        self, run_id: str, *, after_sequence: int = 0, idle_timeout: float = 1.0, idle_first: bool = False,
        gap_lost: GapCheck | None = None, gap_grace: float = GAP_GRACE_SECONDS,
    ) -> AsyncIterator[run_pb2.RunEvent | _Holding | None]:
        """Yields the run's events with sequence > after_sequence, in order, each once.
        Yields None after `idle_timeout` without events, so the caller can check on the run;
        with idle_first, also at once when the replay found nothing. A gap the JetStream log
        cannot fill is skipped once it has been open `gap_grace` seconds and `gap_lost`
        (when given) says the missing event will never come. A quiet spell while events wait
        behind a gap yields HOLDING instead of None."""
        cursor = _Cursor(after_sequence)
        async with self._listen(run_id) as live:
            replayed = await self._replay(run_id, cursor)
            for event in replayed:
                yield event
            if idle_first and not replayed and not cursor.has_gap():
                # (Events held back behind a gap are not "nothing": the quiet-spell skip
                # below delivers them, e.g. a run whose first events a past deployment kept.)
                yield None
            while True:
                try:
                    data = await asyncio.wait_for(live.get(), idle_timeout)
                except TimeoutError:
                    ready = await self._replay(run_id, cursor)
                    if not ready and cursor.has_gap() and cursor.gap_open_seconds() >= gap_grace and \
                            (gap_lost is None or await gap_lost(cursor.last + 1, cursor.gap_open_seconds())):
                        # An event was lost between its commit and its publish (its process
                        # died): the log still lacks it after the grace, move past it.
                        ready = cursor.skip_gap()
                    for event in ready:
                        yield event
                    yield HOLDING if cursor.has_gap() else None
                    continue
                ready = cursor.offer(_parse(data))
                if cursor.has_gap():
                    ready += await self._replay(run_id, cursor)
                for event in ready:
                    yield event

    async def _replay(self, run_id: str, cursor: "_Cursor") -> list[run_pb2.RunEvent]:
        """Reads the run's stored events after the cursor (direct gets, by subject)."""
        ready: list[run_pb2.RunEvent] = []
        while True:
            try:
                msg = await self._js.get_msg(EVENTS_STREAM, seq=cursor.stream_seq + 1,
                                             subject=event_subject(run_id), next=True, direct=True)
            except NotFoundError:
                return ready
            cursor.stream_seq = msg.seq
            ready += cursor.offer(_parse(msg.data))


class _Cursor:
    """Orders events by their per-run sequence, holding early ones until the gap fills."""

    def __init__(self, last: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.last = last
        self.stream_seq = 0  # JetStream position of the replay
        self._early: dict[int, run_pb2.RunEvent] = {}
        self._clock = clock
        self._gap_since: float | None = None  # when the current gap opened

    def offer(self, event: run_pb2.RunEvent) -> list[run_pb2.RunEvent]:
        if event.sequence <= self.last:
            return []
        before = self.last
        self._early[event.sequence] = event
        ready = []
        while self.last + 1 in self._early:
            self.last += 1
            ready.append(self._early.pop(self.last))
        if not self._early:
            self._gap_since = None
        elif self._gap_since is None or self.last != before:
            self._gap_since = self._clock()  # a new gap (or the next one) opens now
        return ready

    def has_gap(self) -> bool:
        return bool(self._early)

    def gap_open_seconds(self) -> float:
        return 0.0 if self._gap_since is None else self._clock() - self._gap_since

    def skip_gap(self) -> list[run_pb2.RunEvent]:
        self.last = min(self._early) - 1
        return self.offer(self._early.pop(self.last + 1))
