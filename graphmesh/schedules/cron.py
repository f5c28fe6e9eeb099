"""Cron expressions and time zones: parsing, validation and the scheduled times they name.

Pure functions over croniter (pinned: its DST behaviour is part of our contract). An
expression has the standard 5 fields (minute hour day-of-month month day-of-week) or
croniter's optional 6th field, seconds, written last ("* * * * * */10": every 10 seconds).
Times are evaluated in the schedule's IANA time zone (zoneinfo) and returned in UTC.

Daylight saving time is what croniter defines, computed from any UTC instant the same way
(the scheduler restarts the iteration from the last fire time it recorded, so the answer
must not depend on where an iteration began; tests/unit/test_schedule_cron.py pins it):
- a local time inside the spring-forward gap (02:30 in Europe/Berlin on the last Sunday
  of March) fires once, when the gap ends (03:00 local);
- a local time inside the repeated hour of the fall-back night fires twice, once in each
  offset (02:30 CEST and 02:30 CET), because both instants carry that local time;
- "every N minutes/hours" keeps counting in local time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadCronError, CroniterBadDateError, CroniterError

from graphmesh.errors import InvalidArgument

__all__ = ["Cron", "parse_cron", "parse_timezone", "DEFAULT_TIMEZONE"]

DEFAULT_TIMEZONE = "UTC"
FIELDS = (5, 6)


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone ("Europe/Berlin"); empty means UTC. INVALID_ARGUMENT for anything else."""
    name = name or DEFAULT_TIMEZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(f"timezone {name!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin, "
                              "America/New_York)", code="INVALID_TIMEZONE") from None


@dataclass(frozen=True)
class Cron:
    expression: str
    zone: ZoneInfo

    @property
    def timezone(self) -> str:
        return self.zone.key

    def next_after(self, instant: datetime) -> datetime | None:
        """The first scheduled time strictly after `instant` (aware), in UTC; None if the
        expression names no later time (croniter gives up after its search horizon)."""
        try:
            local = instant.astimezone(self.zone)
            found = croniter(self.expression, local).get_next(datetime)
        except CroniterBadDateError:
            return None
        return found.astimezone(timezone.utc)

    def times(self, after: datetime, until: datetime, *, limit: int,
              end: datetime | None = None) -> tuple[list[datetime], bool]:
        """Scheduled times t with after <= t <= until (and t <= end, when given), oldest
        first, at most `limit` of them; and whether more such times remain beyond the limit."""
        out: list[datetime] = []
        current = after
        # `after` itself counts when it is a scheduled time: the scheduler stores the next
        # time not yet handled, so it asks from that time on.
        candidate = current if self.matches(current) else self.next_after(current)
        while candidate is not None and candidate <= until and (end is None or candidate <= end):
            if len(out) == limit:
                return out, True
            out.append(candidate)
            candidate = self.next_after(candidate)
        return out, False

    def matches(self, instant: datetime) -> bool:
        """Whether `instant` is itself a scheduled time."""
        before = instant.astimezone(timezone.utc).timestamp() - 1e-3
        following = self.next_after(datetime.fromtimestamp(before, timezone.utc))
        return following == instant.astimezone(timezone.utc)


def parse_cron(expression: str, timezone_name: str = "") -> Cron:
    """A validated cron expression in a time zone. INVALID_ARGUMENT names what is wrong:
    the field count, a field croniter refuses, or an expression that never fires."""
    text = " ".join((expression or "").split())
    if not text:
        raise InvalidArgument("cron is required: 5 fields (minute hour day-of-month month day-of-week), "
                              "e.g. '0 9 * * 1-5'", code="INVALID_CRON")
    count = len(text.split(" "))
    if count not in FIELDS:
        raise InvalidArgument(f"cron {text!r} has {count} fields; it needs 5 (minute hour day-of-month month "
                              "day-of-week), or 6 with seconds last", code="INVALID_CRON")
    zone = parse_timezone(timezone_name)
    try:
        valid = croniter.is_valid(text)
    except CroniterError:
        valid = False
    if not valid:
        try:
            croniter(text)
            why = "it is not a valid cron expression"
        except (CroniterBadCronError, CroniterError, ValueError) as exc:
            why = str(exc)
        raise InvalidArgument(f"cron {text!r}: {why}", code="INVALID_CRON")
    cron = Cron(text, zone)
    if cron.next_after(datetime.now(timezone.utc)) is None:
        raise InvalidArgument(f"cron {text!r} never fires (no such date, e.g. February 30)", code="INVALID_CRON")
    return cron
