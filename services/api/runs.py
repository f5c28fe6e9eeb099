"""RunService: translates protos to run-store calls and back."""

from __future__ import annotations

import asyncio
import logging

from graphmesh.auth.principals import ALL_GRAPHS, ensure_can_cancel, ensure_can_see_run
from graphmesh.bus import require_connected, status_event
from graphmesh.bus.hub import HOLDING, EventHub
from graphmesh.cancel import Canceller
from graphmesh.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from graphmesh.jsonvalues import to_struct
from graphmesh.lifecycle import RunLifecycle
from graphmesh.messages import run_to_proto, span_to_proto, status_from_proto
from graphmesh.retention import delete_run, purge_thread
from graphmesh.rpc.errors import end_stream_for_shutdown
from graphmesh.rpc.principal import caller, principal
from graphmesh.store import TERMINAL, ControlStore, RunRecord, RunStore
from graphmesh.store.paging import page_size
from graphmesh.store.runs import parse_run_id
from graphmesh.store.threads import ThreadStore
from graphmesh.submission import RunSubmitter
from graphmesh.sync_runs import SyncRunner
from graphmesh.telemetry.metrics import RUNS_CREATED
from graphmesh.telemetry.span_store import trace_spans
from graphmesh.telemetry.tracing import trace_id_of
from graphmesh.thread_state import read_snapshot, snapshot_to_proto
from graphmesh.v1 import run_pb2, run_service_pb2_grpc
from graphmesh.v1 import run_service_pb2 as pb

log = logging.getLogger(__name__)

# How long a stream waits for the terminal event of a run Postgres says has ended, and
# for an event missing from the log (a gap) while the run's record is quiet. Both are
# measured by Postgres' own clock (now() - updated_at in SQL), never against this host's.
LOST_EVENT_GRACE_SECONDS = 3.0
GAP_GRACE_SECONDS = 5.0


class RunServicer(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self, *, store: RunStore, nc, hub: EventHub, registry, pool, sync_runner: SyncRunner,
                 submitter: RunSubmitter, stopping: asyncio.Event) -> None:
        self._store = store
        self._threads = ThreadStore(store)
        self._submitter = submitter
        self._control = ControlStore(store)
        self._canceller = Canceller(store, nc)
        self._lifecycle = RunLifecycle(store, nc.jetstream())
        self._stopping = stopping
        self._hub = hub
        self._nc = nc
        self._js = nc.jetstream()
        self._registry = registry
        self._pool = pool
        self._sync = sync_runner

    async def CreateRun(self, request, context):
        run, _ = await self._submitter.create(request)
        return pb.CreateRunResponse(run=run_to_proto(run))

    async def InvokeRun(self, request, context):
        new = await self._submitter.new_run(request, sync=True)
        require_connected(self._nc)
        spec = self._registry.get(new.graph, new.versions["graph_version"])
        run, output = await self._sync.invoke(new, spec, context.time_remaining())
        RUNS_CREATED.add(1, {"graph": run.graph, "graph_version": run.versions["graph_version"], "sync": True})
        return pb.InvokeRunResponse(run=run_to_proto(run), output=to_struct(output))

    async def _visible_run(self, run_id: str) -> RunRecord:
        run = await self._store.get_run(run_id)
        ensure_can_see_run(caller(), run)
        return run

    async def _operated_run(self, run_id: str, action: str) -> RunRecord:
        run = await self._store.get_run(run_id)
        caller().require("operator", graph=run.graph, action=f"{action} run {run.run_id}")
        return run

    async def GetRun(self, request, context):
        return pb.GetRunResponse(run=run_to_proto(await self._visible_run(request.run_id)))

    async def ListRuns(self, request, context):
        size = page_size(request.page_size)
        statuses = []
        for value in request.statuses:
            if value not in run_pb2.RunStatus.values() or value == run_pb2.RUN_STATUS_UNSPECIFIED:
                raise InvalidArgument(f"unknown run status {value}")
            statuses.append(status_from_proto(value))
        me = caller()
        # Operators and reviewers list the runs of graphs they cover; others only their own.
        wide = me.has("operator", "reviewer")
        runs, token = await self._store.list_runs(
            statuses=statuses, graph=request.graph, thread_id=request.thread_id,
            page_size=size, page_token=request.page_token,
            owner=None if wide else me.name,
            graphs=None if not wide or me.covers(ALL_GRAPHS) else sorted(me.graphs),
        )
        return pb.ListRunsResponse(runs=[run_to_proto(r) for r in runs], next_page_token=token)

    async def StreamRun(self, request, context):
        run_id = parse_run_id(request.run_id)
        await self._visible_run(run_id)
        last = request.after_sequence
        # Postgres is asked only when the log is quiet: at once if the replay found nothing
        # (an unknown run is NOT_FOUND), then after each idle second.

        async def gap_lost(missing: int, open_seconds: float) -> bool:
            # The log still lacks the event after the hub's grace: it is lost, not late, only
            # if the run's record has been quiet as long too (Postgres' clock), so that no
            # status change is under way whose events could still arrive.
            _, quiet = await self._store.get_run_quiet(run_id)
            if quiet < GAP_GRACE_SECONDS:
                return False
            log.warning("run %s: event %d missing from the log for %.0f s; stream steps over it",
                        run_id, missing, open_seconds)
            return True

        async for event in self._hub.events(run_id, after_sequence=last, idle_first=True, gap_lost=gap_lost,
                                            gap_grace=GAP_GRACE_SECONDS):
            if event is None or event is HOLDING:
                if self._stopping.is_set():
                    await end_stream_for_shutdown(context)
                run, quiet = await self._store.get_run_quiet(run_id)
                if run.status in TERMINAL:
                    if last >= run.event_seq:
                        return  # the client has seen everything, terminal event included
                    # (Events held behind a gap, the terminal one perhaps among them, come
                    # once the hub fills or steps over the gap: nothing is rebuilt meanwhile.)
                    if event is None and quiet > LOST_EVENT_GRACE_SECONDS:
                        # The terminal event was lost between Postgres and NATS: rebuild it.
                        yield pb.StreamRunResponse(event=status_event(
                            run.run_id, run.event_seq, run.status, error=run.error))
                        return
                continue
            last = event.sequence
            yield pb.StreamRunResponse(event=event)
            if event.WhichOneof("kind") == "status_changed" and \
                    status_from_proto(event.status_changed.status) in TERMINAL:
                return

    async def GetThreadState(self, request, context):
        if not request.thread_id:
            raise InvalidArgument("thread_id is required")
        graph_name, active_run = await self._store.thread_graph(request.thread_id)
        me = caller()
        if not (me.has("operator", "reviewer") and me.covers(graph_name or ALL_GRAPHS)) and \
                await self._store.thread_owner(request.thread_id) != me.name:
            raise PermissionDenied(f"{me.name} may not read thread {request.thread_id}: its runs are not its own",
                                   code="NOT_YOUR_THREAD")
        if graph_name is None:  # created before any run (ThreadService): no state yet
            return pb.GetThreadStateResponse(thread_id=request.thread_id, active_run_id=active_run or "")
        snapshot = await read_snapshot(self._registry, self._pool, graph_name, request.thread_id,
                                       request.checkpoint_id)
        approvals = (await self._threads.pending_approvals([request.thread_id])).get(request.thread_id, [])
        whole = snapshot_to_proto(snapshot, approvals)
        return pb.GetThreadStateResponse(
            thread_id=request.thread_id, values=whole.values, next=whole.next, active_run_id=active_run or "",
            checkpoint_id=whole.checkpoint_id, checkpoint_metadata=whole.metadata if snapshot and snapshot.metadata
            else None, snapshot=whole)

    async def CancelRun(self, request, context):
        if request.action not in (pb.CANCEL_ACTION_UNSPECIFIED, pb.CANCEL_ACTION_INTERRUPT, pb.CANCEL_ACTION_ROLLBACK):
            raise InvalidArgument(f"unknown cancel action {request.action}")
        action = "rollback" if request.action == pb.CANCEL_ACTION_ROLLBACK else "interrupt"
        # An operator of the run's graph, or the run's owner (a LangGraph client cancels its own runs).
        ensure_can_cancel(caller(), await self._store.get_run(request.run_id))
        run = await self._canceller.cancel(request.run_id, reason=request.reason, actor=principal(context),
                                           action=action)
        return pb.CancelRunResponse(run=run_to_proto(run))

    async def RetryRun(self, request, context):
        run = await self._lifecycle.retry(await self._operated_run(request.run_id, "retry"))
        return pb.RetryRunResponse(run=run_to_proto(run))

    async def ResumeRun(self, request, context):
        paused = await self._operated_run(request.run_id, "resume")
        node = paused.error.node if paused.error else ""
        # Read from Postgres, not this process's cached view: an EnableNode a moment ago counts.
        disabled = {d.node for d in await self._control.disabled_nodes(paused.graph)}
        still = [node] if node in disabled else []
        run = await self._lifecycle.resume(paused, still_disabled=still)
        return pb.ResumeRunResponse(run=run_to_proto(run))

    async def GetRunTrace(self, request, context):
        run = await self._visible_run(parse_run_id(request.run_id))
        trace_id = trace_id_of(run.trace_context)
        if not trace_id:
            raise NotFound(f"run {run.run_id} has no trace: tracing was off when it was created",
                           code="TRACE_NOT_FOUND")
        async with self._store.connection() as conn:
            spans = await trace_spans(conn, trace_id)
        return pb.GetRunTraceResponse(trace_id=trace_id, spans=[span_to_proto(s) for s in spans])

    async def PurgeThread(self, request, context):
        """Removes every trace of a finished thread (graphmesh/retention.py); one audit record stays."""
        if not request.thread_id:
            raise InvalidArgument("thread_id is required")
        if not request.reason.strip():
            raise InvalidArgument("reason is required: say why the thread is purged (it goes to the audit trail)",
                                  code="REASON_REQUIRED")
        me = caller()
        if not self._nc.is_connected:  # its events go in the same purge: refuse now, not half-way
            raise Unavailable("NATS is unreachable; nothing was purged, retry shortly")
        # A submitter may delete its own thread (LangGraph's DELETE /threads/{id}); otherwise an
        # operator of the thread's graph (of every graph for a thread that never ran).
        own = me.has("submitter") and await self._store.thread_owner(request.thread_id) == me.name

        def authorize(graph: str | None) -> None:
            if not own:
                me.require("operator", graph=graph or ALL_GRAPHS, action=f"purge thread '{request.thread_id}'")

        # NOT_FOUND comes first for an unknown thread.
        result = await purge_thread(self._pool, self._js, request.thread_id, actor=me.name, reason=request.reason,
                                    authorize=authorize)
        return pb.PurgeThreadResponse(thread_id=result.thread_id, deleted=result.deleted,
                                      audit_record_id=result.audit_record_id)

    async def DeleteRun(self, request, context):
        """Removes one finished run (graphmesh/retention/purge.py); its thread stays."""
        run_id = parse_run_id(request.run_id)
        if not self._nc.is_connected:  # its events go in the same transaction: refuse now
            raise Unavailable("NATS is unreachable; nothing was deleted, retry shortly")
        me = caller()
        # Its owner (LangGraph's DELETE /threads/{id}/runs/{id}), or an operator of its graph;
        # NOT_FOUND first for an unknown run.
        ensure_can_cancel(me, await self._store.get_run(run_id), verb="delete")
        result = await delete_run(self._pool, self._js, run_id, actor=me.name, reason=request.reason)
        return pb.DeleteRunResponse(run_id=result.run_id, thread_id=result.thread_id, deleted=result.deleted,
                                    audit_record_id=result.audit_record_id)
