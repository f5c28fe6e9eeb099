"""Pure logic behind the edge defects of issue 12: field limits, what a Postgres error means,
idempotency fingerprints, the event hub's gaps, StreamRun's clock, and multitask
interrupt/rollback when the active run cannot be cancelled."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from graphmesh.bus.hub import _Cursor
from graphmesh.errors import FailedPrecondition, InvalidArgument, Unavailable
from graphmesh.rpc.validation import MAX_ID_CHARS, MAX_TEXT_CHARS, check_request
from graphmesh.store import CreateResult, NewRun, RunError, RunRecord, RunStatus, TransitionResult
from graphmesh.store.runs import fingerprint_differences, postgres_error, request_fingerprint
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb

# -- ids and names are limited at the edge ------------------------------------------------


def _refused(request) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        check_request(request)
    assert err.value.code == "FIELD_TOO_LONG", err.value.message
    return err.value


@pytest.mark.parametrize("field", ["thread_id", "idempotency_key", "graph", "graph_version"])
def test_long_ids_are_invalid_argument_naming_the_field_and_the_limit(field):
    err = _refused(pb.CreateRunRequest(**{"graph": "tiny", field: "x" * 10_000}))
    assert f"CreateRunRequest.{field}" in err.message and str(MAX_ID_CHARS) in err.message
    check_request(pb.CreateRunRequest(**{"graph": "tiny", field: "x" * MAX_ID_CHARS}))  # at the limit: fine


def test_metadata_keys_and_values_reasons_and_run_ids_are_limited_too():
    assert "metadata[key]" in _refused(pb.CreateRunRequest(graph="tiny", metadata={"k" * 300: "v"})).message
    assert "metadata" in _refused(pb.CreateRunRequest(graph="tiny", metadata={"k": "v" * 5000})).message
    assert "reason" in _refused(pb.CancelRunRequest(run_id="r", reason="r" * (MAX_TEXT_CHARS + 1))).message
    assert "run_id" in _refused(pb.GetRunRequest(run_id="r" * 300)).message
    assert "weights[key]" in _refused(gpb.SetRolloutRequest(graph="g", weights={"v" * 300: 100})).message
    check_request(pb.CancelRunRequest(run_id="r", reason="r" * MAX_TEXT_CHARS))


def test_input_values_are_not_field_limited():
    request = pb.CreateRunRequest(graph="tiny")
    request.input.update({"k" * 1000: "v" * 20_000})  # the input size limit covers inputs
    check_request(request)


# -- only connection trouble is UNAVAILABLE ------------------------------------------------


def test_a_postgres_limit_is_invalid_argument_not_unavailable():
    mapped = postgres_error(psycopg.errors.ProgramLimitExceeded("index row size 10040 exceeds maximum 2704"))
    assert isinstance(mapped, InvalidArgument) and mapped.code == "VALUE_TOO_LARGE"


def test_connection_problems_are_unavailable_and_other_errors_stay_themselves():
    for exc in (psycopg.OperationalError("connection refused"), psycopg.errors.AdminShutdown("shutdown"),
                psycopg.errors.ConnectionFailure("gone"), psycopg.errors.TooManyConnections("full"),
                PoolTimeout("no connection")):
        assert isinstance(postgres_error(exc), Unavailable), exc
    for exc in (psycopg.errors.DeadlockDetected("deadlock"), psycopg.errors.SerializationFailure("retry"),
                psycopg.errors.LockNotAvailable("locked")):
        mapped = postgres_error(exc)
        assert isinstance(mapped, Unavailable) and mapped.code == "STORE_CONFLICT", exc
    for exc in (psycopg.errors.UniqueViolation("dup"), psycopg.errors.UndefinedColumn("no column"),
                psycopg.errors.ObjectInUse("busy")):
        assert postgres_error(exc) is exc


# -- idempotency fingerprints ----------------------------------------------------------------


def _fp(**changes):
    fields = dict(graph="tiny", graph_version="", thread_id="t1", graph_input={"text": "a", "n": [1, 2]})
    fields.update(changes)
    return request_fingerprint(**fields)


def test_the_same_request_has_the_same_fingerprint_whatever_the_key_order():
    assert _fp() == _fp(graph_input={"n": [1, 2], "text": "a"})
    assert fingerprint_differences(_fp(), _fp()) == []


def test_fingerprint_differences_name_the_fields():
    assert fingerprint_differences(_fp(), _fp(graph="other")) == ["graph"]
    assert fingerprint_differences(_fp(), _fp(graph_input={"text": "b"}, thread_id="t2")) == ["thread_id", "input"]
    assert fingerprint_differences(_fp(), _fp(graph_version="2")) == ["graph_version"]
    # A run recorded before fingerprints existed cannot be compared: it is returned as before.
    assert fingerprint_differences(None, _fp(graph="other")) == []


# -- the hub's gaps --------------------------------------------------------------------------


def _event(seq: int) -> run_pb2.RunEvent:
    return run_pb2.RunEvent(run_id="r", sequence=seq)


def test_a_gap_is_timed_from_when_it_opened_and_closes_when_filled():
    now = [100.0]
    cursor = _Cursor(0, clock=lambda: now[0])
    assert [e.sequence for e in cursor.offer(_event(1))] == [1]
    assert cursor.gap_open_seconds() == 0.0
    cursor.offer(_event(3))  # 2 is missing
    now[0] += 4.0
    assert cursor.has_gap() and cursor.gap_open_seconds() == 4.0
    assert [e.sequence for e in cursor.offer(_event(2))] == [2, 3]  # late, not lost: both, in order
    assert not cursor.has_gap() and cursor.gap_open_seconds() == 0.0


# -- StreamRun and the multitask strategies, with fakes ------------------------------------


def _record(status: RunStatus = RunStatus.QUEUED, **changes) -> RunRecord:
    now = datetime.now(timezone.utc)
    run = RunRecord(run_id=str(uuid.uuid4()), thread_id="t", graph="tiny", versions={"graph_version": "1"},
                    status=status, attempt=1, error=None, previous_errors=[], owner="alice",
                    idempotency_key="", metadata={}, input={}, multitask_strategy="interrupt", sync=False,
                    created_at=now, started_at=None, updated_at=now, finished_at=None, event_seq=1)
    return replace(run, **changes)


class _Js:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_async(self, subject, payload, headers=None):
        self.published.append(subject)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def publish(self, subject, payload, headers=None):
        self.published.append(subject)


class _Nc:
    is_connected = True

    def __init__(self) -> None:
        self.js = _Js()

    def jetstream(self):
        return self.js


def _servicer(monkeypatch, store, **attrs):
    import services.api.runs as runs
    from graphmesh.lifecycle import RunLifecycle

    monkeypatch.setattr(runs, "principal", lambda context=None: "alice")
    servicer = runs.RunServicer.__new__(runs.RunServicer)
    servicer._store = store
    servicer._nc = _Nc()
    servicer._js = servicer._nc.jetstream()
    servicer._lifecycle = RunLifecycle(store, servicer._js)
    servicer._stopping = asyncio.Event()
    for name, value in attrs.items():
        setattr(servicer, name, value)
    return servicer


def test_stream_run_judges_quiet_by_postgres_clock_not_this_hosts(monkeypatch):
    """The api host's clock is 10 s ahead: by its own clock the ended run looks long quiet,
    but Postgres says it changed 0.5 s ago, so the stream waits for the real events instead
    of ending early with a terminal event rebuilt from the record."""
    ended = _record(RunStatus.COMPLETED, event_seq=3,
                    updated_at=datetime.now(timezone.utc) - timedelta(seconds=10))

    class Store:
        async def get_run_quiet(self, run_id):
            return ended, 0.5

        async def get_run(self, run_id):
            return ended

    class Hub:
        async def events(self, run_id, **kwargs):
            yield None  # quiet: StreamRun checks on the run
            yield _event(2)
            done = _event(3)
            done.status_changed.status = run_pb2.RUN_STATUS_COMPLETED
            yield done

    servicer = _servicer(monkeypatch, Store(), _hub=Hub())

    async def visible(run_id):
        return ended

    servicer._visible_run = visible

    async def read():
        request = pb.StreamRunRequest(run_id=ended.run_id, after_sequence=1)
        return [r.event async for r in servicer.StreamRun(request, None)]

    events = asyncio.run(read())
    assert [e.sequence for e in events] == [2, 3]  # not [3] rebuilt from the record


class _MultitaskStore:
    def __init__(self, active: str) -> None:
        self.new = _record(RunStatus.QUEUED)
        self.active = active
        self.withdrawn: list[tuple[str, RunError]] = []

    async def run_by_idempotency_key(self, owner, key):
        return None

    async def create_run(self, new):
        return CreateResult(self.new, created=True, dispatch=False)

    async def thread_graph(self, thread_id):
        return "tiny", self.active

    async def withdraw_queued(self, run_id, error):
        self.withdrawn.append((run_id, error))
        return TransitionResult(replace(self.new, status=RunStatus.CANCELLED, error=error, event_seq=2), None)

    async def get_run(self, run_id):
        return self.new


def _create(monkeypatch, exc: Exception):
    from graphmesh.cancel import Canceller
    from graphmesh.submission import RunSubmitter

    active = str(uuid.uuid4())
    store = _MultitaskStore(active)
    servicer = _servicer(monkeypatch, store)
    submitter = RunSubmitter.__new__(RunSubmitter)
    submitter._store, submitter._nc, submitter._lifecycle = store, servicer._nc, servicer._lifecycle
    submitter._canceller = Canceller(store, servicer._nc)

    async def cancel_fails(run_id, **kwargs):
        raise exc

    submitter._canceller.cancel = cancel_fails

    async def new_run(request, *, sync, **scheduled):
        return NewRun(graph="tiny", versions={"graph_version": "1"}, thread_id="t", input={},
                      multitask_strategy="interrupt", owner="alice")

    submitter.new_run = new_run
    servicer._submitter = submitter
    return servicer, store, active


@pytest.mark.parametrize("exc, status", [
    (Unavailable("Postgres is unreachable; retry shortly"), Unavailable),
    (FailedPrecondition("run changed", code="RUN_CHANGED"), FailedPrecondition),
    (RuntimeError("boom"), FailedPrecondition),
])
def test_interrupt_that_cannot_cancel_the_active_run_fails_and_does_not_queue(monkeypatch, exc, status):
    servicer, store, active = _create(monkeypatch, exc)
    with pytest.raises(status) as err:
        asyncio.run(servicer.CreateRun(pb.CreateRunRequest(graph="tiny", thread_id="t"), None))
    assert err.value.code == "MULTITASK_CANCEL_FAILED"
    assert active in err.value.message and "withdrawn" in err.value.message
    assert err.value.run_id == active
    # The new run does not wait behind the active one: it was withdrawn, saying why.
    assert [r for r, _ in store.withdrawn] == [store.new.run_id]
    assert store.withdrawn[0][1].code == "MULTITASK_CANCEL_FAILED"
    assert len(servicer._js.published) == 2  # its QUEUED and CANCELLED events, for its streams


def test_interrupt_of_a_run_that_just_ended_goes_ahead(monkeypatch):
    servicer, store, _ = _create(monkeypatch, FailedPrecondition("ended", code="RUN_FINISHED"))
    response = asyncio.run(servicer.CreateRun(pb.CreateRunRequest(graph="tiny", thread_id="t"), None))
    assert response.run.run_id == store.new.run_id and store.withdrawn == []
