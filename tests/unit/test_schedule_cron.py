"""Cron parsing, validation and scheduled times: time zones and DST as croniter defines them
(graphmesh/schedules/cron.py), the end-time checks of a new schedule, and which errors the scheduler
records FAILED rather than retrying."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from graphmesh.errors import DeadlineExceeded, InvalidArgument, Unavailable
from graphmesh.schedules.cron import parse_cron, parse_timezone
from graphmesh.schedules.firing import failure_detail, idempotency_key, is_outage
from graphmesh.schedules.scheduler import Scheduler
from graphmesh.schedules.spec import MAX_CATCH_UP, catch_up_limit, first_fire, next_fire

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sequence(cron, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = cron.next_after(t)
        out.append(t)
    return out


@pytest.mark.parametrize("expression, words", [
    ("", "required"),
    ("* * * *", "has 4 fields"),
    ("* * * * * * *", "has 7 fields"),
    ("61 * * * *", "61"),
    ("* * * * mon-xyz", "mon-xyz"),
    ("0 0 30 2 *", "never fires"),
])
def test_bad_cron_expressions_are_invalid_argument_naming_the_problem(expression, words):
    with pytest.raises(InvalidArgument) as caught:
        parse_cron(expression)
    assert caught.value.code == "INVALID_CRON"
    assert words in caught.value.message


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "utc+2", "Europe/"])
def test_bad_time_zones_are_invalid_argument(name):
    with pytest.raises(InvalidArgument) as caught:
        parse_cron("* * * * *", name)
    assert caught.value.code == "INVALID_TIMEZONE" and repr(name) in caught.value.message


def test_empty_time_zone_is_utc_and_whitespace_is_normalized():
    cron = parse_cron("  */5   *  * * * ")
    assert cron.expression == "*/5 * * * *" and cron.timezone == "UTC"
    assert parse_timezone("").key == "UTC"


def test_every_minute_in_utc_times_are_inclusive_bounded_and_report_more():
    cron = parse_cron("* * * * *")
    times, more = cron.times(utc(2030, 1, 1, 0, 0), utc(2030, 1, 1, 0, 4, 30), limit=10)
    assert times == [utc(2030, 1, 1, 0, m) for m in range(5)] and not more
    times, more = cron.times(utc(2030, 1, 1, 0, 0), utc(2030, 1, 1, 0, 4, 30), limit=3)
    assert times == [utc(2030, 1, 1, 0, m) for m in range(3)] and more
    # Not itself a scheduled time: counting starts at the next one; the end time bounds it.
    times, more = cron.times(utc(2030, 1, 1, 0, 0, 10), utc(2030, 1, 1, 0, 9), limit=10, end=utc(2030, 1, 1, 0, 2))
    assert times == [utc(2030, 1, 1, 0, 1), utc(2030, 1, 1, 0, 2)] and not more


def test_a_sixth_field_is_seconds_written_last():
    cron = parse_cron("* * * * * */15")
    assert sequence(cron, utc(2030, 1, 1), 3) == [utc(2030, 1, 1, 0, 0, s) for s in (15, 30, 45)]


def test_local_time_stays_local_across_dst_in_new_york():
    # 09:00 New York is 13:00 UTC in EDT and 14:00 UTC in EST (from 2025-11-02).
    cron = parse_cron("0 9 * * *", "America/New_York")
    assert sequence(cron, utc(2025, 11, 1, 12), 3) == [utc(2025, 11, 1, 13), utc(2025, 11, 2, 14),
                                                       utc(2025, 11, 3, 14)]


def test_spring_forward_gap_fires_once_when_the_gap_ends():
    # Europe/Berlin skips 02:00-03:00 on 2025-03-30: the 02:30 fire comes at 03:00 CEST (01:00 UTC).
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    assert sequence(cron, utc(2025, 3, 28, 12), 3) == [utc(2025, 3, 29, 1, 30), utc(2025, 3, 30, 1, 0),
                                                       utc(2025, 3, 31, 0, 30)]


def test_fall_back_repeated_hour_fires_in_each_offset():
    # 02:30 happens twice on 2025-10-26 in Europe/Berlin (CEST, then CET): two fires, an hour apart.
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    assert sequence(cron, utc(2025, 10, 25, 12), 3) == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1, 30),
                                                        utc(2025, 10, 27, 1, 30)]
    hourly = parse_cron("30 * * * *", "Europe/Berlin")
    got = sequence(hourly, utc(2025, 10, 25, 23, 0), 4)
    assert got == [utc(2025, 10, 25, 23, 30), utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1, 30),
                   utc(2025, 10, 26, 2, 30)]  # every real hour, none doubled, none lost


def test_times_do_not_depend_on_where_the_iteration_began():
    # The scheduler restarts from the last time it recorded: each step from a UTC instant
    # must give what one continuous croniter walk gives, across both DST changes.
    cron = parse_cron("*/20 1-3 * * *", "Europe/Berlin")
    walk = sequence(cron, utc(2025, 3, 29), 40)
    assert cron.times(walk[0], walk[-1], limit=100) == (walk, False)  # `after` counts when scheduled
    assert any(t.month == 3 and t.day == 30 for t in walk)
    autumn = parse_cron("*/20 1-3 * * *", "Europe/Berlin")
    walk = sequence(autumn, utc(2025, 10, 25), 40)
    assert any(t.day == 26 for t in walk)
    assert autumn.times(walk[0], walk[-1], limit=100) == (walk, False)


def test_first_fire_refuses_an_end_time_in_the_past_or_before_any_fire():
    cron = parse_cron("0 9 * * *")
    now = utc(2030, 1, 1, 10)
    with pytest.raises(InvalidArgument) as caught:
        first_fire(cron, now, now - timedelta(seconds=1))
    assert caught.value.code == "INVALID_END_TIME" and "not in the future" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        first_fire(cron, now, utc(2030, 1, 2, 8))
    assert caught.value.code == "INVALID_END_TIME" and "no scheduled time" in caught.value.message
    assert first_fire(cron, now, utc(2030, 1, 2, 9)) == utc(2030, 1, 2, 9)  # the end time itself may fire
    assert next_fire(cron, utc(2030, 1, 2, 9), utc(2030, 1, 2, 9)) is None  # then the schedule has ended


def test_catch_up_limit_bounds_and_default():
    assert catch_up_limit(0) == 10 and catch_up_limit(100) == 100
    with pytest.raises(InvalidArgument):
        catch_up_limit(101)


def test_idempotency_key_names_the_schedule_and_the_utc_fire_time():
    berlin = parse_timezone("Europe/Berlin")
    same = datetime(2030, 1, 1, 1, 0, tzinfo=berlin)
    assert idempotency_key("s1", same) == idempotency_key("s1", utc(2030, 1, 1, 0, 0)) \
        == "schedule:s1:2030-01-01T00:00:00+00:00"


@pytest.mark.parametrize("exc, outage", [
    (Unavailable("NATS is away"), True),
    (psycopg.OperationalError("connection refused"), True),
    (psycopg.errors.SerializationFailure("conflict"), True),
    (psycopg.InterfaceError("the connection is closed"), True),
    (PoolTimeout("no connection"), True),
    (DeadlineExceeded("too slow"), False),
    (KeyError("bug"), False),
    (ValueError("bug"), False),
    (psycopg.DataError("invalid input"), False),
])
def test_only_outages_roll_a_pass_back_anything_else_is_recorded_failed(exc, outage):
    assert is_outage(exc) is outage
    assert failure_detail(exc)  # what a FAILED fire records


def test_failure_detail_names_the_code_or_the_exception_class():
    assert failure_detail(DeadlineExceeded("too slow", code="SLOW")) == "SLOW: too slow"
    assert failure_detail(KeyError("x")) == "KeyError: 'x'"


def test_a_batch_not_over_the_largest_catch_up_limit_is_refused():
    # A backlogged pass keeps the latest catch_up_limit late times: with a batch no larger,
    # it would handle none of them.
    with pytest.raises(ValueError):
        Scheduler(runs=None, submitter=None, missed_after_seconds=60, batch=MAX_CATCH_UP)
    Scheduler(runs=None, submitter=None, missed_after_seconds=60, batch=MAX_CATCH_UP + 1)
