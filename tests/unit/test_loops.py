"""graphmesh/loops.py: a periodic step that fails logs its traceback once per distinct
failure, backs off, is counted, keeps going and recovers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from graphmesh import loops


class Stop(BaseException):
    """Ends the loop under test (a BaseException, as cancellation is)."""


class Counter:
    def __init__(self) -> None:
        self.adds: list[tuple[int, dict]] = []

    def add(self, amount, attributes=None) -> None:
        self.adds.append((amount, dict(attributes or {})))


def broken_step():
    return {}["missing"]  # a programming error: KeyError, always from this line


def test_a_failing_step_logs_its_traceback_once_backs_off_and_recovers(monkeypatch, caplog):
    delays: list[float] = []
    calls = 0

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) > 9:
            raise Stop

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls <= 4:
            broken_step()
        if calls == 5:
            raise TypeError("another bug")

    counter = Counter()
    monkeypatch.setattr(loops, "_sleep", fake_sleep)
    monkeypatch.setattr(loops, "LOOP_FAILURES", counter)
    caplog.set_level(logging.INFO, logger="graphmesh.loops")
    with pytest.raises(Stop):
        asyncio.run(loops.run_periodically("test loop", step, 1.0, max_backoff=5.0))

    # It kept going after every failure: nine steps ran.
    assert calls == 9
    # First wait one interval; then doubling per failure in a row, capped at max_backoff;
    # back to the interval once a step succeeds.
    assert delays == [1.0, 1.0, 2.0, 4.0, 5.0, 5.0, 1.0, 1.0, 1.0, 1.0]
    assert counter.adds == [(1, {"loop": "test loop"})] * 5

    records = [r for r in caplog.records if r.name == "graphmesh.loops"]
    tracebacks = [r for r in records if r.exc_info]
    # One traceback for the KeyError (not four), one more when the failure changed.
    assert [r.exc_info[0] for r in tracebacks] == [KeyError, TypeError]
    assert all(r.levelno == logging.ERROR for r in tracebacks)
    assert "broken_step" in caplog.text and "test_loops.py" in caplog.text  # the traceback itself
    repeats = [r for r in records if r.levelno == logging.WARNING]
    # Repeats of the same failure: one line at 2 and 4 in a row (not at 3), no traceback.
    assert [r.getMessage().split(" (")[1].split(" in a row")[0] for r in repeats] == ["2", "4"]
    assert all("test loop" in r.getMessage() for r in records)
    assert any("recovered after 5 failed passes" in r.getMessage() for r in records)


def test_cancellation_stops_the_loop(monkeypatch):
    async def main() -> None:
        steps = asyncio.Event()

        async def step() -> None:
            steps.set()

        task = asyncio.create_task(loops.run_periodically("cancel me", step, 0.01))
        await asyncio.wait_for(steps.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_the_signature_ignores_the_message_but_not_the_place():
    def fail(message: str):
        raise ValueError(message)

    def capture(fn, *args):
        try:
            fn(*args)
        except Exception as exc:
            return exc

    a, b = capture(fail, "run 1 failed"), capture(fail, "run 2 failed")
    assert loops.failure_signature(a) == loops.failure_signature(b)
    assert loops.failure_signature(a) != loops.failure_signature(capture(broken_step))
