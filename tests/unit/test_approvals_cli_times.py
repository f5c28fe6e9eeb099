"""`--since` / `--until` of `graphmesh approvals list` and `graphmesh audit`: ISO 8601 or a
duration ago, always an aware time."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from graphmesh.cli.approvals import _moment


@pytest.mark.parametrize("text, ago", [("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)),
                                       ("7d", timedelta(days=7)), ("1w", timedelta(weeks=1)),
                                       ("45s", timedelta(seconds=45)), ("1.5h", timedelta(minutes=90)),
                                       ("0s", timedelta())])
def test_duration_means_that_long_ago(text, ago):
    before = datetime.now(timezone.utc)
    moment = _moment(text)
    after = datetime.now(timezone.utc)
    assert before - ago <= moment <= after - ago


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=timezone.utc)),
    ("2026-12-01T09:30", datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)),
    ("2026-12-01 09:30:15", datetime(2026, 12, 1, 9, 30, 15, tzinfo=timezone.utc)),
    ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)),
    ("2026-12-01T09:30:00.123456789Z", datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)),
    ("2026-12-01T11:30:00+02:00", datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)),
])
def test_iso_8601_is_utc_unless_it_names_a_zone(text, expected):
    moment = _moment(text)
    assert moment.tzinfo is not None
    assert moment == expected


@pytest.mark.parametrize("text", ["yesterday", "30", "m30", "-2h", "2 h", "2y", "", "2026-13-01"])
def test_anything_else_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        _moment(text)


def test_a_duration_past_the_calendar_is_refused():
    with pytest.raises(argparse.ArgumentTypeError, match="too long ago"):
        _moment("99999999d")
