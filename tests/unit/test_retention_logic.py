"""Retention logic without servers: settings per graph, the sweeper's period, and the
refusals of a purge (graphmesh/retention/, graphmesh/retention/schedule.py)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from graphmesh.auth.principals import Principal
from graphmesh.config import Settings
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from graphmesh.manifest import GraphSpec, Retention
from graphmesh.registry import Registry
from graphmesh.retention import Sweeper, purge_thread, retention_by_graph
from graphmesh.retention.purge import ensure_deletable
from graphmesh.retention.schedule import make_sweeper


def spec(name: str, version: str, **retention) -> GraphSpec:
    return GraphSpec(name=name, version=version, path="graphs.tiny:graph", retention=Retention(**retention))


def test_the_most_generous_setting_across_versions_wins():
    got = retention_by_graph([
        spec("a", "1", threads_days=7, checkpoints_keep=3, events_days=1, traces_days=2, reviews_days=30),
        spec("a", "2", threads_days=30, checkpoints_keep=10, events_days=0, traces_days=1, reviews_days=5),
        spec("b", "1", checkpoints_keep=2),
    ])
    assert got["a"] == Retention(threads_days=30, checkpoints_keep=10, events_days=0, traces_days=2, reviews_days=30)
    assert got["b"] == Retention(checkpoints_keep=2)


def test_zero_keeps_forever_whatever_other_versions_say():
    got = retention_by_graph([spec("a", "1", threads_days=1, checkpoints_keep=0), spec("a", "2", threads_days=0,
                                                                                   checkpoints_keep=5)])
    assert got["a"].threads_days == 0 and got["a"].checkpoints_keep == 0


def test_retention_period_comes_from_settings():
    assert Settings.from_env({}).retention_seconds == 300
    assert Settings.from_env({"GRAPHMESH_RETENTION_SECONDS": "2.5"}).retention_seconds == 2.5
    with pytest.raises(ValueError):
        Settings.from_env({"GRAPHMESH_RETENTION_SECONDS": "soon"})


def test_no_sweeper_without_settings_and_one_covering_every_graph_otherwise():
    assert make_sweeper(None, None, Registry([spec("a", "1"), spec("b", "1")])) is None
    sweeper = make_sweeper(None, None, Registry([spec("a", "1", traces_days=1), spec("b", "1")]))
    assert set(sweeper.retention) == {"a", "b"}  # b too: it keeps its spans forever


def test_spans_of_no_run_are_kept_while_one_graph_keeps_traces_forever():
    async def unattributed(retention):
        return await Sweeper(pool=None, js=None, retention=retention).expire_unattributed_spans()
    # pool=None: a sweep that reached Postgres would fail.
    assert asyncio.run(unattributed({"a": Retention(traces_days=1), "b": Retention()})) == 0
    assert asyncio.run(unattributed({})) == 0


# -- purge refusals, on a fake connection -------------------------------------------------------

class _Cursor:
    def __init__(self, rows):
        self._rows = rows
        self.rowcount = len(rows)

    async def fetchone(self):
        return self._rows[0] if self._rows else None

    async def fetchall(self):
        return self._rows


class _Conn:
    def __init__(self, thread, runs):
        self._thread, self._runs = thread, runs
        self.statements: list[str] = []

    async def execute(self, sql, args=()):
        self.statements.append(sql)
        if "FROM gm_threads" in sql:
            return _Cursor([self._thread] if self._thread else [])
        if "FROM gm_runs" in sql:
            return _Cursor(self._runs)
        raise AssertionError(f"a refused purge must not get this far: {sql}")


class _Pool:
    def __init__(self, conn):
        self.conn = conn

    @asynccontextmanager
    async def connection(self):
        yield self.conn


def _purge(conn, **kw):
    return asyncio.run(purge_thread(_Pool(conn), None, "t1", actor="op", reason=kw.pop("reason", "gdpr"), **kw))


def test_unknown_thread_is_not_found():
    with pytest.raises(NotFound) as err:
        _purge(_Conn(None, []))
    assert err.value.code == "THREAD_NOT_FOUND"


def test_a_reason_is_required():
    with pytest.raises(InvalidArgument) as err:
        _purge(_Conn({"graph": "g"}, []), reason="  ")
    assert err.value.code == "REASON_REQUIRED"


def test_the_caller_must_operate_the_threads_graph():
    operator = Principal("olga", frozenset({"operator"}), graphs=frozenset({"other"}))
    with pytest.raises(PermissionDenied) as err:
        _purge(_Conn({"graph": "g"}, []),
               authorize=lambda graph: operator.require("operator", graph=graph, action="purge thread 't1'"))
    assert err.value.code == "GRAPH_NOT_COVERED"


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING", "PAUSED", "WAITING_FOR_APPROVAL"])
def test_a_thread_with_a_run_in_progress_is_refused(status):
    runs = [{"run_id": "r-old", "status": "COMPLETED", "trace_context": ""},
            {"run_id": "r-new", "status": status, "trace_context": ""}]
    conn = _Conn({"graph": "g"}, runs)
    with pytest.raises(FailedPrecondition) as err:
        _purge(conn)
    assert err.value.code == "THREAD_ACTIVE" and err.value.run_id == "r-new"
    assert f"r-new ({status})" in err.value.message and "cancel" in err.value.message
    assert not any("DELETE" in s for s in conn.statements)


def _run_row(**fields) -> dict:
    return {"status": "COMPLETED", "holds_thread": False, "webhook_pending": False, "purging_schedule": None,
            **fields}


@pytest.mark.parametrize("fields, code", [
    ({"status": "WAITING_FOR_APPROVAL"}, "RUN_ACTIVE"),
    ({"status": "QUEUED"}, "RUN_ACTIVE"),
    ({"holds_thread": True}, "RUN_ACTIVE"),
    ({"webhook_pending": True}, "WEBHOOK_DELIVERY_PENDING"),
    ({"purging_schedule": "s-1"}, "SCHEDULE_PURGES_THREAD"),
])
def test_a_run_is_deleted_only_when_nothing_still_needs_it(fields, code):
    with pytest.raises(FailedPrecondition) as err:
        ensure_deletable("r-1", _run_row(**fields))
    assert err.value.code == code and err.value.run_id == "r-1"


def test_a_finished_run_nothing_waits_for_may_be_deleted():
    for status in ("COMPLETED", "FAILED", "CANCELLED"):
        ensure_deletable("r-1", _run_row(status=status))
