"""Checkpoint writes are fenced by the run's lease (issue 12), against the real Postgres.

A saver bound to a claim (run id, epoch N) writes checkpoints and pending writes while the
claim holds; once another claim took the run (epoch N + 1) every write of the old saver
raises LeaseLost and leaves nothing behind, while the new holder's saver writes. A holder
paused inside its fenced transaction does not block a takeover for longer than its idle
timeout, and cannot write once it wakes. Readers (no fence) keep working.
"""

from __future__ import annotations

import asyncio
import operator
import uuid
from typing import Annotated

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from typing_extensions import TypedDict

from graphmesh.db import make_pool
from graphmesh.execution.saver import TracedPostgresSaver
from graphmesh.store import LeaseLost, NewRun, RunStatus, RunStore, migrate
from graphmesh.store.leases import LeaseFence, hold
from graphmesh.store.records import VERSION_FIELDS

# Short enough that a test waits for a lapse without noticing, long enough for a claim.
LEASE_SECONDS = 0.3


class State(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]


def _graph(checkpointer):
    builder = StateGraph(State)
    builder.add_node("step", lambda state: {"trail": ["step"]})
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=checkpointer)


async def _prepare(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn)
        await AsyncPostgresSaver(conn).setup()


async def _take_over(store: RunStore, run_id: str, worker: str):
    """Claims the run once the current holder's lease has lapsed (polled, bounded)."""
    for _ in range(200):
        claim = await store.claim(run_id, worker_id=worker, lease_seconds=60)
        if claim is not None:
            return claim
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} could not be taken over by {worker}")


async def _checkpoints(pool, thread_id: str) -> list[dict]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT checkpoint_id, metadata FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_id", (thread_id,))
        return await cur.fetchall()


async def _writes(pool, thread_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM checkpoint_writes WHERE thread_id = %s", (thread_id,))
        return (await cur.fetchone())["n"]


async def _new_run(store: RunStore) -> tuple[str, str]:
    thread_id = f"fence-{uuid.uuid4()}"
    versions = {f: "1" for f in VERSION_FIELDS}
    result = await store.create_run(NewRun(graph="fenced", versions=versions, thread_id=thread_id, input={}))
    return result.run.run_id, thread_id


@pytest.fixture
def database_url(embedded_pg_nats):
    url = embedded_pg_nats.database_url
    asyncio.run(_prepare(url))
    return url


def test_a_saver_bound_to_an_old_epoch_cannot_write(database_url):
    async def scenario():
        pool = make_pool(database_url, max_size=4)
        await pool.open()
        try:
            store = RunStore(pool)
            run_id, thread_id = await _new_run(store)
            first = await store.claim(run_id, worker_id="w1", lease_seconds=LEASE_SECONDS)
            assert first is not None
            old = TracedPostgresSaver(pool, fence=LeaseFence(run_id, first.epoch, "w1"))
            config = {"configurable": {"thread_id": thread_id}}

            # While the claim holds, its saver writes.
            assert (await _graph(old).ainvoke({"trail": []}, config))["trail"] == ["step"]
            written = await _checkpoints(pool, thread_id)
            assert written
            writes_before = await _writes(pool, thread_id)

            second = await _take_over(store, run_id, "w2")
            assert second.epoch == first.epoch + 1

            # The old holder's execution: refused at its first write, nothing stored.
            with pytest.raises(LeaseLost) as refused:
                await _graph(old).ainvoke({"trail": []}, config)
            assert f"epoch is {second.epoch}" in refused.value.message
            latest = await old.aget_tuple(config)  # reading needs no lease
            with pytest.raises(LeaseLost):
                await old.aput_writes(latest.config, [("trail", ["stale"])], task_id=str(uuid.uuid4()))
            assert await _checkpoints(pool, thread_id) == written
            assert await _writes(pool, thread_id) == writes_before

            # The same epoch with another holder's name is refused too.
            impostor = TracedPostgresSaver(pool, fence=LeaseFence(run_id, second.epoch, "w1"))
            with pytest.raises(LeaseLost):
                await _graph(impostor).ainvoke({"trail": []}, config)

            # The new holder writes, and continues from the state the old one left.
            new = TracedPostgresSaver(pool, fence=LeaseFence(run_id, second.epoch, "w2"))
            assert (await _graph(new).ainvoke({"trail": []}, config))["trail"] == ["step", "step"]
            assert len(await _checkpoints(pool, thread_id)) > len(written)

            # Unfenced readers and writers (GetThreadState, tools) are not affected.
            reader = TracedPostgresSaver(pool)
            state = await _graph(reader).aget_state(config)
            assert state.values["trail"] == ["step", "step"]
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_run_that_ended_refuses_checkpoint_writes(database_url):
    async def scenario():
        pool = make_pool(database_url, max_size=4)
        await pool.open()
        try:
            store = RunStore(pool)
            run_id, thread_id = await _new_run(store)
            claim = await store.claim(run_id, worker_id="w1", lease_seconds=60)
            saver = TracedPostgresSaver(pool, fence=LeaseFence(run_id, claim.epoch, "w1"))
            config = {"configurable": {"thread_id": thread_id}}
            await _graph(saver).ainvoke({"trail": []}, config)
            await store.transition(run_id, RunStatus.COMPLETED, epoch=claim.epoch)
            with pytest.raises(LeaseLost) as refused:
                await _graph(saver).ainvoke({"trail": []}, config)
            assert "COMPLETED" in refused.value.message
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_holder_paused_inside_its_write_does_not_block_a_takeover(database_url):
    """The fence locks the run's row only from its check, the last statement of the write's
    transaction, to the commit. A holder frozen in that window is cut off by Postgres after
    its idle timeout, so the takeover goes on, and the frozen write never commits; a holder
    paused earlier in its write is refused at the check."""
    async def scenario():
        pool = make_pool(database_url, max_size=4)
        await pool.open()
        try:
            store = RunStore(pool)
            run_id, thread_id = await _new_run(store)
            first = await store.claim(run_id, worker_id="w1", lease_seconds=LEASE_SECONDS)
            fence = LeaseFence(run_id, first.epoch, "w1", idle_seconds=1)
            checked, release = asyncio.Event(), asyncio.Event()

            async def frozen_after_the_check():
                async with await psycopg.AsyncConnection.connect(database_url, autocommit=True,
                                                                 row_factory=dict_row) as conn:
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.execute("INSERT INTO checkpoint_migrations (v) VALUES (-424242)")
                        await hold(cur, fence)  # the row is locked from here to the commit
                        checked.set()
                        await release.wait()  # "frozen" between the check and the commit

            writer = asyncio.create_task(frozen_after_the_check())
            await checked.wait()
            second = await asyncio.wait_for(_take_over(store, run_id, "w2"), 30)
            assert second.epoch == first.epoch + 1
            release.set()
            with pytest.raises(psycopg.Error):  # its session was ended: the commit cannot happen
                await writer

            # Paused before the check: the check sees the new epoch, the write is rolled back.
            saver = TracedPostgresSaver(pool, fence=fence)
            with pytest.raises(LeaseLost):
                async with saver._cursor(pipeline=True) as cur:
                    await cur.execute("INSERT INTO checkpoint_migrations (v) VALUES (-424243)")
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) AS n FROM checkpoint_migrations WHERE v < -424000")
                assert (await cur.fetchone())["n"] == 0
        finally:
            await pool.close()

    asyncio.run(scenario())
