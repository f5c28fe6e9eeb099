"""What a client asks a schedule to be, checked before anything is stored: every bad value
is INVALID_ARGUMENT naming the field (an unknown graph or version NOT_FOUND), so a schedule
that exists is one that can fire. The run-time checks (admission limits, a thread busy under
`reject`) stay with each fire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from graphmesh.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from graphmesh.execution.run_options import parse_options
from graphmesh.schedules.cron import Cron, parse_cron
from graphmesh.store.schedules import ScheduleStore
from graphmesh.submission import check_metadata

DEFAULT_CATCH_UP = 10
MAX_CATCH_UP = 100


def catch_up_limit(value: int) -> int:
    if value == 0:
        return DEFAULT_CATCH_UP
    if not 1 <= value <= MAX_CATCH_UP:
        raise InvalidArgument(f"catch_up_limit must be between 1 and {MAX_CATCH_UP} (0: {DEFAULT_CATCH_UP}), "
                              f"not {value}", code="INVALID_SCHEDULE")
    return value


def first_fire(cron: Cron, now: datetime, end_time: datetime | None) -> datetime:
    """The first scheduled time after `now`; INVALID_ARGUMENT when the end time leaves none."""
    if end_time is not None and end_time <= now:
        raise InvalidArgument(f"end_time {end_time.isoformat()} is not in the future", code="INVALID_END_TIME")
    first = cron.next_after(now)
    if first is None or (end_time is not None and first > end_time):
        raise InvalidArgument(f"cron {cron.expression!r} ({cron.timezone}) has no scheduled time before end_time "
                              f"{end_time.isoformat() if end_time else ''}", code="INVALID_END_TIME")
    return first


def next_fire(cron: Cron, now: datetime, end_time: datetime | None) -> datetime | None:
    """The next scheduled time after `now` within the end time; None: the schedule has ended."""
    following = cron.next_after(now)
    if following is None or (end_time is not None and following > end_time):
        return None
    return following


class ScheduleChecker:
    """Checks schedule values against the registry, the caller and the webhook policy."""

    def __init__(self, *, registry, submitter) -> None:
        self._registry = registry
        self._submitter = submitter

    def graph_input(self, graph: str, version: str, value: dict[str, Any]) -> dict[str, Any]:
        """NOT_FOUND for an unknown graph or version; the input checked against the pinned
        version, or the version new runs use now. `graph`: a known graph's name (the
        caller checked it is given and exists)."""
        spec = self._registry.get(graph, version or None)
        return self._registry.validate_input(spec, value)

    def options(self, graph: str, version: str, message) -> dict[str, Any] | None:
        """The RunOptions every fire's run gets, checked as CreateRun checks a run's (stream
        modes, node names, recursion limit, size) against the pinned version, or the version
        new runs use now; as the record keeps them (None: none). A checkpoint or a command
        is refused: every fire runs the schedule's input on its thread's latest state."""
        spec = self._registry.get(graph, version or None)
        options = parse_options(message, nodes=lambda: self._registry.node_names(spec.name, spec.version),
                                max_steps=spec.limits.max_steps, max_bytes=spec.limits.max_input_bytes)
        if options.checkpoint_id or options.has_command:
            raise InvalidArgument("a schedule's options cannot carry checkpoint_id, command_update or command_goto: "
                                  "every fire runs the schedule's input on its thread's latest state",
                                  code="INVALID_SCHEDULE")
        if options.after_seconds:
            raise InvalidArgument("a schedule's options cannot carry after_seconds: its runs start at its fire "
                                  "times (change the cron expression instead)", code="INVALID_SCHEDULE")
        return options.to_json()

    @staticmethod
    def metadata(value: dict[str, str]) -> dict[str, str]:
        # Checked here too, so that a schedule whose every fire would fail is never stored.
        return check_metadata(value)

    def webhook(self, url: str, on_waiting: bool) -> dict[str, Any] | None:
        return self._submitter.webhook(url, on_waiting) if url else None

    @staticmethod
    async def thread(conn, me, graph: str, thread_id: str) -> str | None:
        """A fixed thread the owner may run on, of the same graph; None: a new thread per fire.
        Looked up on `conn` (the caller's, which may hold the schedule's row lock)."""
        if not thread_id:
            return None
        thread_graph, owner = await ScheduleStore.thread_facts(conn, thread_id)
        if thread_graph is None:
            return thread_id  # the first fire creates it
        if thread_graph != graph:
            raise FailedPrecondition(f"thread '{thread_id}' belongs to graph '{thread_graph}', not '{graph}'",
                                     code="THREAD_GRAPH_MISMATCH")
        if not (me.has("operator") and me.covers(graph)):
            if owner and owner != me.name:
                raise PermissionDenied(f"{me.name} may not schedule runs on thread {thread_id}: it belongs to "
                                       "another owner", code="NOT_YOUR_THREAD")
        return thread_id

    @staticmethod
    def cron(expression: str, timezone_name: str) -> Cron:
        return parse_cron(expression, timezone_name)
