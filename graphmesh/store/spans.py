"""The trace store (gm_spans): finished spans written by each process's exporter
(telemetry/span_store.py), read back as one trace. Retention's deletions of spans are
store/retention.py."""

from __future__ import annotations

from typing import Any, Iterable

INSERT_SPAN = """
INSERT INTO gm_spans (trace_id, span_id, parent_span_id, name, service, kind, start_ns, end_ns,
                      status, status_message, attributes, run_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (trace_id, span_id) DO NOTHING
"""
SELECT_TRACE = "SELECT * FROM gm_spans WHERE trace_id = %s ORDER BY start_ns"


def insert_spans(conn: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """Writes span rows (INSERT_SPAN's columns) on a synchronous connection; a span
    already stored is left as it is."""
    with conn.cursor() as cur:
        cur.executemany(INSERT_SPAN, rows)


async def trace_rows(conn: Any, trace_id: str) -> list[dict[str, Any]]:
    """A trace's stored spans, by start time."""
    return await (await conn.execute(SELECT_TRACE, (trace_id,))).fetchall()
