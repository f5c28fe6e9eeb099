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


# -- every periodic loop goes through run_periodically ---------------------------------------


def _drive(monkeypatch, make_loop, passes: int = 3) -> None:
    """Runs a loop whose first pass fails, until `passes` sleeps have happened."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > passes:
            raise Stop

    monkeypatch.setattr(loops, "_sleep", fake_sleep)
    monkeypatch.setattr(loops, "LOOP_FAILURES", Counter())
    with pytest.raises(Stop):
        asyncio.run(make_loop())


class Flaky:
    """An awaitable that fails on its first call and then returns `value`."""

    def __init__(self, value=None) -> None:
        self.calls = 0
        self.value = value

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first pass fails")
        return self.value


def test_each_periodic_loop_logs_and_survives_a_failing_pass(monkeypatch, caplog):
    from graphmesh import approval_expiry as expiry
    from graphmesh import pollers, routing
    from graphmesh import reconcile as reconciler
    from graphmesh.bus import approvals
    from graphmesh.disabled_nodes import DisabledNodes
    from graphmesh.retention import schedule as retention

    caplog.set_level(logging.INFO)
    flaky: dict[str, Flaky] = {}

    def reconcile():
        flaky["reconciler"] = Flaky()
        monkeypatch.setattr(reconciler, "reconcile_once", flaky["reconciler"])
        return reconciler.reconcile_forever(None, None, None, every_seconds=1, quiet_seconds=1)

    def relay():
        store = type("Store", (), {})()
        store.outbox_batch = flaky["approval outbox relay"] = Flaky([])
        return approvals.relay_outbox_forever(None, store)

    def expire():
        store = type("Approvals", (), {})()
        store.expired = flaky["approval expiry"] = Flaky([])
        return expiry.expire_forever(None, store)

    def disabled():
        control = type("Control", (), {})()
        control.disabled_nodes = flaky["disabled nodes refresh"] = Flaky([])
        return DisabledNodes(control)._refresh_forever()

    def rollouts():
        store = type("Rollouts", (), {})()
        store.all = flaky["rollout refresh"] = Flaky({})
        return routing.VersionRouter(None, store, None)._refresh_forever()

    def sweep():
        sweeper = type("Sweeper", (), {"retention": {"g": None}})()
        sweeper.sweep = flaky["retention sweep"] = Flaky()
        monkeypatch.setattr(retention, "make_sweeper", lambda *args: sweeper)
        return retention.sweep_forever(None, None, None, every_seconds=300)

    def poll():
        step = flaky["metrics poll (poll_runs)"] = Flaky()

        async def poll_runs(*args):
            await step(*args)
        return pollers.poll_forever(poll_runs, None, None)

    for make in (reconcile, relay, expire, disabled, rollouts, sweep, poll):
        _drive(monkeypatch, make)
    for name, step in flaky.items():
        assert step.calls == 3, name  # it kept going after the failure
        failures = [r for r in caplog.records if r.exc_info and name in r.getMessage()]
        assert len(failures) == 1, name  # with its traceback
        assert any(f"{name} recovered" in r.getMessage() for r in caplog.records), name


def test_retry_for_retries_what_it_accepts_until_its_deadline():
    from graphmesh.loops import retry_for

    async def main():
        calls = []

        async def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise TimeoutError("not yet")
            return "done"

        assert await retry_for(flaky, seconds=5, retry_on=lambda e: isinstance(e, TimeoutError), interval=0) == "done"
        assert len(calls) == 3

        async def broken():
            raise ValueError("a bug, not an outage")

        with pytest.raises(ValueError):  # not accepted: raised at once
            await retry_for(broken, seconds=5, retry_on=lambda e: isinstance(e, TimeoutError), interval=0)

        async def never():
            raise TimeoutError("still down")

        with pytest.raises(TimeoutError):  # accepted, but only for `seconds`
            await retry_for(never, seconds=0.05, retry_on=lambda e: True, interval=0.01)

    asyncio.run(main())
