"""Pruning a long thread's checkpoints to its newest N, keeping the latest resumable and
every blob a kept checkpoint still references (the retention sweeper's checkpoints_keep,
graphmesh/retention/sweeper.py)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# LangGraph's channel of pending sends (langgraph.checkpoint.serde.types.TASKS).
TASKS_CHANNEL = "__pregel_tasks"

REPEATABLE_READ = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
SELECT_IDLE_THREAD = "SELECT 1 FROM gm_threads WHERE thread_id = %s AND active_run_id IS NULL"

SELECT_THREAD_CHECKPOINTS = """
SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, coalesce((checkpoint ->> 'v')::int, 0) AS v,
       metadata -> 'parents' ->> '' AS root
FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_ns, checkpoint_id DESC
"""
# A DeltaChannel rebuilds its value from older checkpoints: such threads are not pruned
# (as langgraph-checkpoint-postgres's own keep_latest refuses them).
SELECT_DELTA = """
SELECT 1 FROM checkpoints WHERE thread_id = %(t)s
  AND (metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned')
UNION ALL
SELECT 1 FROM checkpoints c CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
WHERE c.thread_id = %(t)s AND v.value = 'true'::jsonb AND EXISTS (
    SELECT 1 FROM checkpoint_blobs b WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
      AND b.channel = v.key AND b.version = c.checkpoint -> 'channel_versions' ->> v.key)
LIMIT 1
"""
HAS_SENDS = f"""
SELECT 1 FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s
  AND channel = '{TASKS_CHANNEL}' LIMIT 1
"""
DELETE_CHECKPOINTS = """
WITH deleted AS (
    DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
    RETURNING checkpoint -> 'channel_versions' AS versions
)
SELECT DISTINCT v.key AS channel, v.value AS version FROM deleted CROSS JOIN LATERAL jsonb_each_text(deleted.versions) v
"""
REFERENCED_BLOBS = """
SELECT DISTINCT v.key AS channel, v.value AS version FROM checkpoints c
CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') v
WHERE c.thread_id = %s AND c.checkpoint_ns = %s
"""
# A subgraph call's namespace, whole.
DELETE_NS_WRITES = "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s"
DELETE_NS_BLOBS = "DELETE FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s"
DELETE_NS_CHECKPOINTS = "DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s"
DELETE_CHECKPOINT_WRITES = """
DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)
"""
# A kept checkpoint whose parent went is left without one.
UNLINK_PARENTS = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id = %s AND checkpoint_ns = %s AND parent_checkpoint_id = ANY(%s)
"""
DELETE_BLOBS = """
DELETE FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = ANY(%s)
"""


async def prune_thread_checkpoints(pool, thread_id: str, keep: int) -> int:
    """Keeps the newest `keep` checkpoints of each namespace of an idle thread (always its
    latest, plus the parent its latest reads pending sends from when it predates
    checkpoint format v4), their pending writes and every blob a kept checkpoint
    references; deletes the other checkpoints, their writes and the blobs only they used.
    A subgraph call's namespace goes with the root checkpoint it started from.

    One REPEATABLE READ transaction per thread, as langgraph-checkpoint-postgres prunes:
    what a run writes meanwhile is neither seen nor deleted. Returns checkpoints deleted."""
    keep = max(1, keep)
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute(REPEATABLE_READ)
            idle = await (await conn.execute(SELECT_IDLE_THREAD, (thread_id,))).fetchone()
            if idle is None:
                return 0  # a run holds it (its rollback may need older checkpoints)
            if await (await conn.execute(SELECT_DELTA, {"t": thread_id})).fetchone():
                log.info("thread %s uses a DeltaChannel: its checkpoints are not pruned", thread_id)
                return 0
            rows = await (await conn.execute(SELECT_THREAD_CHECKPOINTS, (thread_id,))).fetchall()
            by_ns: dict[str, list[dict]] = {}
            for row in rows:  # newest first within each namespace
                by_ns.setdefault(row["checkpoint_ns"], []).append(row)
            kept: dict[str, list[str]] = {}
            for ns, items in by_ns.items():
                ids = [r["checkpoint_id"] for r in items[:keep]]
                head = items[0]
                if head["v"] < 4 and head["parent_checkpoint_id"] and head["parent_checkpoint_id"] not in ids and \
                        await (await conn.execute(HAS_SENDS, (thread_id, ns, head["parent_checkpoint_id"]))).fetchone():
                    ids.append(head["parent_checkpoint_id"])
                kept[ns] = ids
            root_all = {r["checkpoint_id"] for r in by_ns.get("", [])}
            root_kept = set(kept.get("", []))
            # A subgraph call's namespace ("node:task id") goes with the saved root checkpoint it started from.
            calls = [ns for ns, items in by_ns.items() if ":" in ns and items[0]["root"] in root_all
                     and items[0]["root"] not in root_kept]
            deleted = 0
            for ns in calls:
                for statement in (DELETE_NS_WRITES, DELETE_NS_BLOBS):
                    await conn.execute(statement, (thread_id, ns))
                deleted += (await conn.execute(DELETE_NS_CHECKPOINTS, (thread_id, ns))).rowcount
            for ns, items in by_ns.items():
                if ns in calls:
                    continue
                doomed = [r["checkpoint_id"] for r in items if r["checkpoint_id"] not in kept[ns]]
                if not doomed:
                    continue
                await conn.execute(DELETE_CHECKPOINT_WRITES, (thread_id, ns, doomed))
                freed = await (await conn.execute(DELETE_CHECKPOINTS, (thread_id, ns, doomed))).fetchall()
                deleted += len(doomed)
                await conn.execute(UNLINK_PARENTS, (thread_id, ns, doomed))
                referenced = {(r["channel"], r["version"]) for r in await (await conn.execute(
                    REFERENCED_BLOBS, (thread_id, ns))).fetchall()}
                garbage: dict[str, list[str]] = {}
                for r in freed:
                    if (r["channel"], r["version"]) not in referenced:
                        garbage.setdefault(r["channel"], []).append(r["version"])
                for channel, versions in garbage.items():
                    await conn.execute(DELETE_BLOBS, (thread_id, ns, channel, versions))
            return deleted
