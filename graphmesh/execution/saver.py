"""The checkpointer the executor binds to each run: langgraph-checkpoint-postgres's
AsyncPostgresSaver, with a trace span around every checkpoint write."""

from __future__ import annotations

from typing import Any, Sequence

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graphmesh.telemetry.tracing import tracer


class TracedPostgresSaver(AsyncPostgresSaver):
    async def aput(self, config, checkpoint, metadata, new_versions):
        attrs = {"graphmesh.checkpoint_id": checkpoint["id"], "graphmesh.step": int(metadata.get("step", -1)),
                 "graphmesh.channels_written": len(new_versions)}
        with tracer.start_as_current_span("checkpoint.put", attributes=attrs):
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        attrs = {"graphmesh.task_id": task_id, "graphmesh.writes": len(writes)}
        with tracer.start_as_current_span("checkpoint.put_writes", attributes=attrs):
            return await super().aput_writes(config, writes, task_id, task_path)
