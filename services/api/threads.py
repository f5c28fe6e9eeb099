"""ThreadService: threads as records of their own (graphmesh/store/threads.py), their
checkpoint history and state updates (graphmesh/thread_state.py).

Who sees what, as with runs: a thread's owner (its creator, or the owner of the runs that
made it) sees and changes it; reviewers and operators see the threads of the graphs they
cover (a thread with no graph yet: those who cover every graph); an operator of the graph
may change it too. A state update holds the thread's row lock while it writes, so no run
can start on the thread halfway, and leaves an audit record naming ids only.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import json_format

from graphmesh.auth.principals import ALL_GRAPHS, Principal
from graphmesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from graphmesh.jsonvalues import from_proto, to_struct, to_value
from graphmesh.messages import timestamp
from graphmesh.routing import VersionRouter
from graphmesh.rpc.principal import caller
from graphmesh.store import ApprovalRecord, RunStore
from graphmesh.store.audit import record_audit
from graphmesh.store.paging import page_size
from graphmesh.store.threads import ThreadFilter, ThreadRecord, ThreadStore, check_new_thread_id
from graphmesh.thread_state import (
    json_contains,
    latest_values,
    read_history,
    read_snapshot,
    snapshot_to_proto,
    update_state,
)
from graphmesh.v1 import thread_pb2, thread_service_pb2_grpc
from graphmesh.v1 import thread_service_pb2 as pb

STATUS_TO_PROTO = {"idle": thread_pb2.THREAD_STATUS_IDLE, "busy": thread_pb2.THREAD_STATUS_BUSY,
                   "interrupted": thread_pb2.THREAD_STATUS_INTERRUPTED, "error": thread_pb2.THREAD_STATUS_ERROR}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}
SORT_BY = {pb.THREAD_SORT_BY_UNSPECIFIED: "created_at", pb.THREAD_SORT_BY_CREATED_AT: "created_at",
           pb.THREAD_SORT_BY_UPDATED_AT: "updated_at", pb.THREAD_SORT_BY_THREAD_ID: "thread_id",
           pb.THREAD_SORT_BY_STATUS: "status"}
DEFAULT_LIMIT = 10
# A values filter reads each candidate thread's latest checkpoint (values are not in SQL):
# candidates are read in batches, in the listing's order, up to this many per request.
VALUES_SCAN_BATCH = 200
MAX_VALUES_SCAN = 10_000
# A thread whose run ended (or that never ran) but whose checkpoint still has nodes to run
# stopped at a static interrupt (interrupt_before/after) or was left so by a state update.
AT_REST = ("", "COMPLETED", "CANCELLED")


def _dict(message, field: str) -> dict[str, Any] | None:
    return json_format.MessageToDict(getattr(message, field)) if message.HasField(field) else None


def interrupts_to_proto(approvals: list[ApprovalRecord]) -> list[thread_pb2.ThreadInterrupt]:
    return [thread_pb2.ThreadInterrupt(interrupt_id=a.interrupt_id, value=to_value(a.payload), node=a.node,
                                       approval_id=a.approval_id, run_id=a.run_id) for a in approvals]


def thread_to_proto(thread: ThreadRecord, *, status: str | None = None, values: dict | None = None,
                    approvals: list[ApprovalRecord] = ()) -> thread_pb2.Thread:
    return thread_pb2.Thread(
        thread_id=thread.thread_id, graph=thread.graph, metadata=to_struct(thread.metadata),
        status=STATUS_TO_PROTO[status or thread.status], created_at=timestamp(thread.created_at),
        updated_at=timestamp(thread.updated_at), active_run_id=thread.active_run_id,
        latest_run_id=thread.latest_run_id, values=to_struct(values) if values is not None else None,
        interrupts=interrupts_to_proto(list(approvals)), owner=thread.owner)


def _covers(me: Principal, graph: str) -> bool:
    return me.covers(graph) if graph else me.covers(ALL_GRAPHS)


def ensure_can_see(me: Principal, thread: ThreadRecord) -> None:
    """Its owner, or a reviewer or operator of its graph."""
    if thread.owner == me.name or (me.has("operator", "reviewer") and _covers(me, thread.graph)):
        return
    raise PermissionDenied(f"{me.name} may not read thread {thread.thread_id}: it is not its owner and does not "
                           f"operate or review graph '{thread.graph or '(none yet)'}'", code="NOT_YOUR_THREAD")


def ensure_can_change(me: Principal, thread: ThreadRecord) -> None:
    """Its owner, or an operator of its graph."""
    if thread.owner == me.name or (me.has("operator") and _covers(me, thread.graph)):
        return
    raise PermissionDenied(f"{me.name} may not change thread {thread.thread_id}: it is not its owner and does not "
                           f"operate graph '{thread.graph or '(none yet)'}'", code="NOT_YOUR_THREAD")


def visibility(me: Principal) -> dict[str, Any]:
    """ThreadFilter's owner and graphs for what `me` may list."""
    if me.has("operator", "reviewer"):
        if me.covers(ALL_GRAPHS):
            return {"owner": None, "graphs": None}
        return {"owner": me.name, "graphs": sorted(me.graphs)}
    return {"owner": me.name, "graphs": None}


class ThreadServicer(thread_service_pb2_grpc.ThreadServiceServicer):
    def __init__(self, *, store: RunStore, registry, pool, router: VersionRouter) -> None:
        self._threads = ThreadStore(store)
        self._registry = registry
        self._pool = pool
        self._router = router

    async def _visible(self, thread_id: str) -> ThreadRecord:
        if not thread_id:
            raise InvalidArgument("thread_id is required")
        thread = await self._threads.get(thread_id)
        ensure_can_see(caller(), thread)
        return thread

    async def CreateThread(self, request, context):
        me = caller()
        graph = ""
        if request.graph:
            graph = self._registry.get(request.graph).name  # NOT_FOUND for an unknown graph
            me.require("submitter", "operator", graph=graph, action=f"create threads of graph '{graph}'")
        if request.if_exists not in (pb.IF_EXISTS_UNSPECIFIED, pb.IF_EXISTS_RAISE, pb.IF_EXISTS_DO_NOTHING):
            raise InvalidArgument(f"unknown if_exists {request.if_exists}")
        thread_id = check_new_thread_id(request.thread_id) if request.thread_id else str(uuid.uuid4())
        thread, created = await self._threads.create(thread_id, graph=graph or None,
                                                     metadata=_dict(request, "metadata") or {}, owner=me.name)
        if not created:
            try:
                ensure_can_see(me, thread)
            except PermissionDenied:
                thread = None  # taken by someone else's thread: say so, show nothing of it
            if thread is None or request.if_exists != pb.IF_EXISTS_DO_NOTHING:
                raise _exists(thread_id)
        approvals = (await self._threads.pending_approvals([thread_id])).get(thread_id, [])
        return pb.CreateThreadResponse(thread=thread_to_proto(thread, approvals=approvals), created=created)

    async def GetThread(self, request, context):
        thread = await self._visible(request.thread_id)
        approvals = (await self._threads.pending_approvals([thread.thread_id])).get(thread.thread_id, [])
        status, values = thread.status, None
        at_rest = status == "idle" and thread.latest_run_status in AT_REST
        if thread.graph and (request.include_values or at_rest):
            try:
                snapshot = await read_snapshot(self._registry, self._pool, thread.graph, thread.thread_id)
            except NotFound:  # a graph this deployment no longer declares: nothing to read it with
                snapshot = None
            if snapshot is not None:
                if at_rest and snapshot.next:
                    status = "interrupted"
                values = snapshot.values if isinstance(snapshot.values, dict) else {"value": snapshot.values}
        if request.include_values and values is None:
            values = {}
        return pb.GetThreadResponse(thread=thread_to_proto(thread, status=status, values=values, approvals=approvals))

    async def UpdateThread(self, request, context):
        if not request.thread_id:
            raise InvalidArgument("thread_id is required")
        paths = list(request.update_mask.paths)
        unknown = sorted(set(paths) - {"metadata"})
        if unknown:
            raise InvalidArgument(f"update_mask may name only metadata, not {', '.join(unknown)}",
                                  code="INVALID_UPDATE_MASK")
        ensure_can_change(caller(), await self._threads.get(request.thread_id))
        thread = await self._threads.update_metadata(request.thread_id, _dict(request, "metadata") or {},
                                                     replace="metadata" in paths)
        approvals = (await self._threads.pending_approvals([thread.thread_id])).get(thread.thread_id, [])
        return pb.UpdateThreadResponse(thread=thread_to_proto(thread, approvals=approvals))

    def _filter(self, request, *, thread_ids: list[str] | None = None) -> ThreadFilter:
        status = ""
        if request.status != thread_pb2.THREAD_STATUS_UNSPECIFIED:
            if request.status not in STATUS_FROM_PROTO:
                raise InvalidArgument(f"unknown thread status {request.status}")
            status = STATUS_FROM_PROTO[request.status]
        return ThreadFilter(metadata=_dict(request, "metadata"), status=status, graph=request.graph,
                            thread_ids=thread_ids, **visibility(caller()))

    async def _values_of(self, thread: ThreadRecord) -> dict[str, Any]:
        try:
            return await latest_values(self._registry, self._pool, thread.graph, thread.thread_id)
        except NotFound:  # a graph this deployment no longer declares
            return {}

    async def _scan(self, where: ThreadFilter, pattern: dict, *, want: int | None, sort_by: str = "created_at",
                    ascending: bool = False) -> list[tuple[ThreadRecord, dict]]:
        """Threads matching `where` whose latest values contain `pattern`, in order, until
        `want` are found (None: all). Reads one checkpoint per candidate."""
        found: list[tuple[ThreadRecord, dict]] = []
        offset = 0
        while want is None or len(found) < want:
            if offset >= MAX_VALUES_SCAN:
                raise ResourceExhausted(
                    f"a values filter reads each candidate thread's state; more than {MAX_VALUES_SCAN} threads "
                    "match the other filters: narrow the search by metadata, graph, status or ids",
                    code="THREAD_SEARCH_TOO_WIDE")
            batch = await self._threads.list(where, sort_by=sort_by, ascending=ascending, limit=VALUES_SCAN_BATCH,
                                             offset=offset)
            for thread in batch:
                values = await self._values_of(thread)
                if json_contains(values, pattern):
                    found.append((thread, values))
            if len(batch) < VALUES_SCAN_BATCH:
                break
            offset += VALUES_SCAN_BATCH
        return found

    async def ListThreads(self, request, context):
        limit = page_size(request.limit, DEFAULT_LIMIT, field="limit")
        sort_by = SORT_BY.get(request.sort_by)
        if sort_by is None:
            raise InvalidArgument(f"unknown sort_by {request.sort_by}")
        where = self._filter(request, thread_ids=list(request.thread_ids) or None)
        pattern = _dict(request, "values")
        if pattern:
            matched = await self._scan(where, pattern, want=request.offset + limit + 1, sort_by=sort_by,
                                       ascending=request.ascending)
            page = matched[request.offset:request.offset + limit]
            has_more = len(matched) > request.offset + limit
            threads = [t for t, _ in page]
            values = {t.thread_id: v for t, v in page}
        else:
            threads = await self._threads.list(where, sort_by=sort_by, ascending=request.ascending, limit=limit + 1,
                                               offset=request.offset)
            has_more = len(threads) > limit
            threads = threads[:limit]
            values = {}
            if request.include_values:
                values = {t.thread_id: await self._values_of(t) for t in threads}
        approvals = await self._threads.pending_approvals([t.thread_id for t in threads])
        return pb.ListThreadsResponse(threads=[
            thread_to_proto(t, values=values.get(t.thread_id, {}) if request.include_values else None,
                            approvals=approvals.get(t.thread_id, [])) for t in threads], has_more=has_more)

    async def CountThreads(self, request, context):
        where = self._filter(request)
        pattern = _dict(request, "values")
        if pattern:
            return pb.CountThreadsResponse(count=len(await self._scan(where, pattern, want=None)))
        return pb.CountThreadsResponse(count=await self._threads.count(where))

    async def GetThreadHistory(self, request, context):
        thread = await self._visible(request.thread_id)
        limit = page_size(request.limit, DEFAULT_LIMIT, field="limit")
        if not thread.graph:
            if request.checkpoint_id:
                raise NotFound(f"thread '{thread.thread_id}' has no checkpoint '{request.checkpoint_id}'",
                               code="CHECKPOINT_NOT_FOUND")
            return pb.GetThreadHistoryResponse()
        snapshots = await read_history(self._registry, self._pool, thread.graph, thread.thread_id, limit=limit,
                                       before=request.before_checkpoint_id, metadata=_dict(request, "metadata"),
                                       checkpoint_id=request.checkpoint_id)
        approvals = (await self._threads.pending_approvals([thread.thread_id])).get(thread.thread_id, [])
        return pb.GetThreadHistoryResponse(snapshots=[snapshot_to_proto(s, approvals) for s in snapshots])

    async def UpdateThreadState(self, request, context):
        me = caller()
        if not request.thread_id:
            raise InvalidArgument("thread_id is required")
        thread = await self._threads.get(request.thread_id)
        ensure_can_change(me, thread)
        if thread.graph:
            if request.graph and self._registry.get(request.graph).name != thread.graph:
                raise FailedPrecondition(f"thread '{thread.thread_id}' belongs to graph '{thread.graph}', not "
                                         f"'{request.graph}'", code="THREAD_GRAPH_MISMATCH")
            name = thread.graph
        else:  # never ran: the graph asked for, else the one its metadata names (as LangGraph's server reads it)
            named = thread.metadata.get("graph_id")
            name = request.graph or (named if isinstance(named, str) else "")
        if not name:
            raise InvalidArgument(f"thread '{thread.thread_id}' has no graph yet: give the graph whose state schema "
                                  "takes the update (graph, or the thread's metadata.graph_id)",
                                  code="THREAD_HAS_NO_GRAPH")
        graph = self._registry.get(name).name  # NOT_FOUND for an unknown graph
        me.require("submitter", "operator", graph=graph, action=f"update the state of threads of graph '{graph}'")
        values = from_proto(request.values) if request.HasField("values") else None
        # The version its first run will be routed to (stable per thread), for a thread with no checkpoint.
        version = await self._router.choose(graph, thread.thread_id)
        async with self._threads.holding_idle(thread.thread_id) as (conn, row):
            if row["graph"] not in (None, graph):  # a run of another graph took it meanwhile
                raise FailedPrecondition(f"thread '{thread.thread_id}' belongs to graph '{row['graph']}', not "
                                         f"'{graph}'", code="THREAD_GRAPH_MISMATCH")
            # On the locked connection: the checkpoint commits with the lock, the graph and the
            # audit record (or not at all), and an update holds one pooled connection, not two.
            checkpoint_id, spec = await update_state(
                self._registry, conn, graph, thread.thread_id, values, as_node=request.as_node,
                checkpoint_id=request.checkpoint_id, new_thread_version=version)
            if row["graph"] is None:
                await self._threads.set_graph(conn, thread.thread_id, graph)
            else:
                await self._threads.touch(conn, thread.thread_id)
            await record_audit(conn, me.name, "thread_state_updated", details={
                "thread_id": thread.thread_id, "graph": graph, "graph_version": spec.version,
                "as_node": request.as_node, "from_checkpoint_id": request.checkpoint_id,
                "checkpoint_id": checkpoint_id})
        return pb.UpdateThreadStateResponse(checkpoint_id=checkpoint_id)


def _exists(thread_id: str) -> AlreadyExists:
    return AlreadyExists(f"thread '{thread_id}' already exists (if_exists=DO_NOTHING returns your own thread "
                         "instead)", code="THREAD_EXISTS")
