"""The statements of data retention (graphmesh/retention/): purging one thread's rows from
every table (purge.py) and the sweeps that pick what a graph's retention settings let go
(sweeper.py). Checkpoint pruning is store/pruning.py; the audit record a purge leaves is
store/audit.py."""

from __future__ import annotations

from typing import Any

from graphmesh.store.statuses import TERMINAL, sql_set

# Holds one sweeper at a time across api replicas ("gm-retention", folded to 63 bits).
SWEEP_LOCK_KEY = 0x676D2D726574656E74696F6E & 0x7FFFFFFFFFFFFFFF
TRY_SWEEP_LOCK = "SELECT pg_try_advisory_lock(%s) AS ok"
SWEEP_UNLOCK = "SELECT pg_advisory_unlock(%s)"
DB_NOW = "SELECT now() AS now"
# gm_audit is append-only except in a transaction that says it is erasing (store/schema.py).
ERASING = "SET LOCAL graphmesh.erasing = 'on'"

# -- purging one thread ------------------------------------------------------------------

SELECT_THREAD_GRAPH = "SELECT graph FROM gm_threads WHERE thread_id = %s"
SELECT_THREAD_GRAPH_FOR_UPDATE = SELECT_THREAD_GRAPH + " FOR UPDATE"
SELECT_THREAD_RUNS = "SELECT run_id, status, trace_context FROM gm_runs WHERE thread_id = %s ORDER BY created_at"
SELECT_THREAD_RUNS_FOR_UPDATE = SELECT_THREAD_RUNS + " FOR UPDATE"
# Runs of the thread that are unfinished, or finished less than %s seconds ago.
COUNT_RECENT_RUNS = """
SELECT count(*) AS n FROM gm_runs WHERE thread_id = %s
  AND (finished_at IS NULL OR finished_at >= now() - make_interval(secs => %s))
"""
SELECT_RUN_APPROVALS = "SELECT approval_id, graph, created_at FROM gm_approvals WHERE run_id = ANY(%s)"
# Every audit record of an approval names its run too (and gm_audit is indexed by run).
DELETE_RUN_AUDIT = "DELETE FROM gm_audit WHERE run_id = ANY(%s)"
# Outbox messages are keyed "<approval or run id>:<kind>".
DELETE_OUTBOX_OF = "DELETE FROM gm_outbox WHERE split_part(msg_id, ':', 1) = ANY(%s)"
DELETE_RUN_DEAD_LETTERS = "DELETE FROM gm_dead_letters WHERE run_id = ANY(%s)"
# A delivery's stored body holds the run's output: it goes with the thread.
DELETE_RUN_WEBHOOK_DELIVERIES = "DELETE FROM gm_webhook_deliveries WHERE run_id = ANY(%s)"
DELETE_APPROVALS = "DELETE FROM gm_approvals WHERE approval_id = ANY(%s)"
# The runs' spans, and the spans of their traces that name no run (e.g. the CreateRun
# call) unless they name another thread: a client may have created several runs in one trace.
DELETE_THREAD_SPANS = """
DELETE FROM gm_spans WHERE run_id = ANY(%s) OR (trace_id = ANY(%s) AND run_id IS NULL
  AND coalesce(attributes ->> 'graphmesh.thread_id', %s) = %s)
"""
DELETE_THREAD_CHECKPOINT_WRITES = "DELETE FROM checkpoint_writes WHERE thread_id = %s"
DELETE_THREAD_CHECKPOINT_BLOBS = "DELETE FROM checkpoint_blobs WHERE thread_id = %s"
DELETE_THREAD_CHECKPOINTS = "DELETE FROM checkpoints WHERE thread_id = %s"
DELETE_THREAD_RUNS = "DELETE FROM gm_runs WHERE thread_id = %s"
DELETE_THREAD = "DELETE FROM gm_threads WHERE thread_id = %s"


# -- deleting one run (RunService.DeleteRun) ---------------------------------------------

# Locks the run only: the thread's other runs go on meanwhile (a finished run takes its thread
# again only through RetryRun, which updates the run row and so waits for this lock). What
# would refuse the deletion comes along: the run holding its thread, a webhook delivery not yet
# sent (its body is built from the run), and a schedule that purges the run's thread itself.
LOCK_RUN_FOR_DELETE = """
SELECT r.run_id, r.thread_id, r.graph, r.status, r.trace_context,
    coalesce((SELECT t.active_run_id = r.run_id FROM gm_threads t WHERE t.thread_id = r.thread_id), false)
        AS holds_thread,
    EXISTS (SELECT 1 FROM gm_webhook_deliveries d WHERE d.run_id = r.run_id AND d.status = 'PENDING')
        AS webhook_pending,
    (SELECT s.schedule_id FROM gm_schedule_fires f JOIN gm_schedules s ON s.schedule_id = f.schedule_id
     WHERE f.run_id = r.run_id AND s.thread_id IS NULL AND s.on_run_completed = 'delete' LIMIT 1)
        AS purging_schedule
FROM gm_runs r WHERE r.run_id = %s
FOR UPDATE OF r
"""
DELETE_RUN = "DELETE FROM gm_runs WHERE run_id = %s"


async def delete_run_rows(conn: Any, run_id: Any, *, thread_id: str, trace_ids: list[str],
                          approval_ids: list) -> dict[str, int]:
    """Deletes one run's rows (not its thread's checkpoints), its spans and those of its trace
    that name no run (DELETE_THREAD_SPANS), inside the caller's transaction (which must have
    run ERASING); rows deleted per table, in deletion order."""
    ids_text = [str(run_id)] + [str(a) for a in approval_ids]
    deleted: dict[str, int] = {}
    deleted["audit_records"] = await count_rows(conn, DELETE_RUN_AUDIT, ([run_id],))
    deleted["outbox"] = await count_rows(conn, DELETE_OUTBOX_OF, (ids_text,))
    deleted["dead_letters"] = await count_rows(conn, DELETE_RUN_DEAD_LETTERS, ([run_id],))
    deleted["webhook_deliveries"] = await count_rows(conn, DELETE_RUN_WEBHOOK_DELIVERIES, ([run_id],))
    deleted["approvals"] = await count_rows(conn, DELETE_APPROVALS, (approval_ids,))
    deleted["spans"] = await delete_thread_spans(conn, thread_id, [str(run_id)], trace_ids)
    deleted["runs"] = await count_rows(conn, DELETE_RUN, (run_id,))
    return deleted


async def count_rows(conn: Any, sql: str, args: Any) -> int:
    return (await conn.execute(sql, tuple(args))).rowcount


async def delete_thread_rows(conn: Any, thread_id: str, *, run_ids: list, approval_ids: list,
                             trace_ids: list[str]) -> dict[str, int]:
    """Deletes the thread's rows from every table, inside the caller's transaction (which
    must have run ERASING); returns rows deleted per table, in deletion order."""
    run_texts = [str(r) for r in run_ids]
    ids_text = run_texts + [str(a) for a in approval_ids]
    deleted: dict[str, int] = {}
    deleted["audit_records"] = await count_rows(conn, DELETE_RUN_AUDIT, (run_ids,))
    deleted["outbox"] = await count_rows(conn, DELETE_OUTBOX_OF, (ids_text,))
    deleted["dead_letters"] = await count_rows(conn, DELETE_RUN_DEAD_LETTERS, (run_ids,))
    deleted["webhook_deliveries"] = await count_rows(conn, DELETE_RUN_WEBHOOK_DELIVERIES, (run_ids,))
    deleted["approvals"] = await count_rows(conn, DELETE_APPROVALS, (approval_ids,))
    deleted["spans"] = await delete_thread_spans(conn, thread_id, run_texts, trace_ids)
    deleted["checkpoint_writes"] = await count_rows(conn, DELETE_THREAD_CHECKPOINT_WRITES, (thread_id,))
    deleted["checkpoint_blobs"] = await count_rows(conn, DELETE_THREAD_CHECKPOINT_BLOBS, (thread_id,))
    deleted["checkpoints"] = await count_rows(conn, DELETE_THREAD_CHECKPOINTS, (thread_id,))
    deleted["runs"] = await count_rows(conn, DELETE_THREAD_RUNS, (thread_id,))
    deleted["threads"] = await count_rows(conn, DELETE_THREAD, (thread_id,))
    return deleted


async def delete_thread_spans(conn: Any, thread_id: str, run_ids: list[str], trace_ids: list[str]) -> int:
    """The spans of a purged thread's runs and traces (DELETE_THREAD_SPANS); rows deleted."""
    return await count_rows(conn, DELETE_THREAD_SPANS, (run_ids, trace_ids, thread_id, thread_id))


# -- the sweeps ---------------------------------------------------------------------------

TERMINAL_SQL = sql_set(TERMINAL)
SELECT_EXPIRED_THREADS = f"""
SELECT t.thread_id FROM gm_threads t
WHERE t.graph = %(graph)s AND t.active_run_id IS NULL
  AND t.updated_at < now() - make_interval(secs => %(age)s)
  AND NOT EXISTS (SELECT 1 FROM gm_runs r WHERE r.thread_id = t.thread_id
      AND (r.status NOT IN {TERMINAL_SQL} OR r.finished_at IS NULL
           OR r.finished_at >= now() - make_interval(secs => %(age)s)))
  AND t.thread_id > %(after)s
ORDER BY t.thread_id LIMIT %(limit)s
"""
# Idle threads of the graph with more checkpoints in a namespace than it keeps; only those
# touched since the last sweep (a thread gets checkpoints only while a run holds it).
SELECT_LONG_THREADS = """
SELECT t.thread_id FROM gm_threads t
WHERE t.graph = %(graph)s AND t.active_run_id IS NULL AND t.thread_id > %(after)s
  AND t.updated_at >= %(since)s
  AND EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = t.thread_id
              GROUP BY c.checkpoint_ns HAVING count(*) > %(keep)s)
ORDER BY t.thread_id LIMIT %(limit)s
"""
# Spans a graph's runs recorded before the cutoff: their trace ids (a batch).
DELETE_OLD_RUN_SPANS = """
DELETE FROM gm_spans WHERE ctid IN (
    SELECT s.ctid FROM gm_spans s
    JOIN gm_runs r ON r.run_id = (CASE WHEN s.run_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                       THEN s.run_id::uuid END)
    WHERE s.run_id IS NOT NULL AND r.graph = %(graph)s
      AND s.recorded_at < now() - make_interval(secs => %(age)s)
    LIMIT %(limit)s)
RETURNING trace_id
"""
# ... and the spans of those traces that name no run (e.g. the CreateRun call).
DELETE_OLD_TRACE_SPANS = """
DELETE FROM gm_spans WHERE trace_id = ANY(%(traces)s) AND run_id IS NULL
  AND recorded_at < now() - make_interval(secs => %(age)s)
"""
DELETE_ALL_OLD_SPANS = """
DELETE FROM gm_spans WHERE ctid IN (
    SELECT ctid FROM gm_spans WHERE recorded_at < now() - make_interval(secs => %(age)s) LIMIT %(limit)s)
"""
SELECT_EVENT_RUNS = f"""
SELECT run_id, finished_at FROM gm_runs
WHERE graph = %(graph)s AND status IN {TERMINAL_SQL}
  AND finished_at < now() - make_interval(secs => %(age)s)
  AND (finished_at, run_id) > (%(since)s::timestamptz, %(after)s::uuid)
ORDER BY finished_at, run_id LIMIT %(limit)s
"""
SELECT_OLD_REVIEWS = f"""
SELECT a.approval_id, a.run_id FROM gm_approvals a JOIN gm_runs r ON r.run_id = a.run_id
WHERE a.graph = %(graph)s AND a.status <> 'PENDING'
  AND a.decided_at < now() - make_interval(secs => %(age)s)
  AND r.status IN {TERMINAL_SQL}
ORDER BY a.decided_at LIMIT %(limit)s
"""
DELETE_REVIEW_AUDIT = "DELETE FROM gm_audit WHERE run_id = ANY(%s) AND approval_id = ANY(%s)"
DELETE_DECIDED_APPROVALS = "DELETE FROM gm_approvals WHERE approval_id = ANY(%s) AND status <> 'PENDING'"


async def delete_reviews(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Deletes decided approvals (rows of SELECT_OLD_REVIEWS), their audit records and
    outbox rows, inside the caller's transaction (which must have run ERASING)."""
    ids = [r["approval_id"] for r in rows]
    if not ids:
        return
    await conn.execute(DELETE_REVIEW_AUDIT, (sorted({r["run_id"] for r in rows}), ids))
    await conn.execute(DELETE_OUTBOX_OF, ([str(i) for i in ids],))
    await conn.execute(DELETE_DECIDED_APPROVALS, (ids,))
