"""Calls more than one route makes: an assistant by id or graph name, a thread tagged with
the graph and assistant a run uses (as the reference server tags it), and a thread
deleted the LangGraph way (its runs cancelled first, then purged).

Every call carries the HTTP caller's credentials (Gateway.call_metadata)."""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import grpc
from starlette.requests import Request

from graphmesh.v1 import (
    assistant_service_pb2,
    run_pb2,
    run_service_pb2,
    thread_pb2,
    thread_service_pb2,
)
from services.gateway.context import CALL_TIMEOUT, Gateway
from services.gateway.errors import HTTPError
from services.gateway.jsonio import to_struct
from services.gateway.run_shapes import TERMINAL
from services.gateway.shapes import run_thread_metadata

# Runs that still hold a thread: a purge refuses them, so a delete cancels them first.
ACTIVE_RUN_STATUSES = (run_pb2.RUN_STATUS_QUEUED, run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_PAUSED,
                       run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL)
# Runs resting at an interrupt (or a paused node): what ending a thread (as_node __end__) drops.
RESTING_AT_INTERRUPT = (run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL, run_pb2.RUN_STATUS_PAUSED)
# How long a delete waits for its cancelled runs to come to rest before purging.
CANCEL_SETTLE_SECONDS = 15.0
PURGE_REASON = "DELETE /threads/{thread_id} through the LangGraph HTTP API gateway"


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def get_assistant(request: Request, assistant_id: str) -> assistant_service_pb2.Assistant:
    """An assistant by id, or a graph's system assistant by the graph's name (404 otherwise)."""
    gw = gateway_of(request)
    reply = await gw.assistants.GetAssistant(assistant_service_pb2.GetAssistantRequest(assistant_id=assistant_id),
                                             timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return reply.assistant


async def run_assistant(request: Request, assistant_id: str) -> assistant_service_pb2.Assistant:
    """get_assistant for a run: a system assistant the same caller read within the cache's
    TTL is not read again (context.SystemAssistantCache); any other is read each time."""
    gw = gateway_of(request)
    credentials = dict(gw.call_metadata(request)).get("authorization", "")
    kept = gw.system_assistants.get(credentials, assistant_id)
    if kept is not None:
        return kept
    assistant = await get_assistant(request, assistant_id)
    if assistant.system:
        gw.system_assistants.put(credentials, assistant_id, assistant)
    return assistant


async def get_thread(request: Request, thread_id: str, *, include_values: bool = False) -> thread_pb2.Thread:
    gw = gateway_of(request)
    reply = await gw.threads.GetThread(
        thread_service_pb2.GetThreadRequest(thread_id=thread_id, include_values=include_values),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return reply.thread


async def run_thread(request: Request, thread_id: str, assistant: assistant_service_pb2.Assistant, *,
                     create: bool, metadata: Mapping[str, Any] | None = None) -> thread_pb2.Thread:
    """The thread a run on `assistant` goes to. create=True (if_not_exists=create, or a
    stateless run's new thread): made if absent, with `metadata` and the graph_id and
    assistant_id tags the reference server writes; else 404 when absent. An existing thread
    is not changed here: tag_run_thread tags it once its run was created, so a refused run
    leaves it as it was."""
    gw = gateway_of(request)
    if not create:
        return await get_thread(request, thread_id)
    reply = await gw.threads.CreateThread(
        thread_service_pb2.CreateThreadRequest(
            thread_id=thread_id, metadata=to_struct({**run_thread_metadata(assistant), **dict(metadata or {})},
                                                    "metadata"),
            if_exists=thread_service_pb2.IF_EXISTS_DO_NOTHING, graph=assistant.graph),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return reply.thread


async def tag_run_thread(request: Request, thread: thread_pb2.Thread,
                         assistant: assistant_service_pb2.Assistant) -> None:
    """graph_id and assistant_id merged into the thread's metadata (others kept), as the
    reference server tags the thread of a run it created."""
    tags = run_thread_metadata(assistant)
    current = thread.metadata
    if all(current.fields.get(k) is not None and current.fields[k].string_value == v for k, v in tags.items()):
        return
    gw = gateway_of(request)
    await gw.threads.UpdateThread(
        thread_service_pb2.UpdateThreadRequest(thread_id=thread.thread_id, metadata=to_struct(tags, "metadata")),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))


async def _active_runs(request: Request, thread_id: str, statuses=ACTIVE_RUN_STATUSES) -> list[run_pb2.Run]:
    gw = gateway_of(request)
    runs: list[run_pb2.Run] = []
    token = ""
    while True:
        reply = await gw.runs.ListRuns(
            run_service_pb2.ListRunsRequest(thread_id=thread_id, statuses=statuses, page_size=1000,
                                            page_token=token),
            timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
        runs.extend(reply.runs)
        token = reply.next_page_token
        if not token:
            return runs


async def cancel_thread_runs(request: Request, thread_id: str, *, statuses=ACTIVE_RUN_STATUSES,
                             reason: str = "its thread is being deleted (LangGraph HTTP API)") -> None:
    """Cancels the thread's runs in `statuses` (action interrupt) and waits until they rest."""
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    active = await _active_runs(request, thread_id, statuses)
    for run in active:
        try:
            await gw.runs.CancelRun(run_service_pb2.CancelRunRequest(
                run_id=run.run_id, action=run_service_pb2.CANCEL_ACTION_INTERRUPT, reason=reason),
                timeout=CALL_TIMEOUT, metadata=md)
        except grpc.aio.AioRpcError as exc:
            # Ended meanwhile: nothing left to cancel.
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
    deadline = asyncio.get_running_loop().time() + CANCEL_SETTLE_SECONDS
    for run in active:
        while True:
            reply = await gw.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id), timeout=CALL_TIMEOUT,
                                         metadata=md)
            if reply.run.status in TERMINAL:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise HTTPError(409, f"thread {thread_id} still has run {run.run_id} in progress after cancelling it; "
                                     "retry the delete")
            await asyncio.sleep(0.1)


async def thread_ids_with_metadata(request: Request, metadata: Mapping[str, Any]) -> list[str]:
    """Every thread whose metadata contains `metadata` (all pages)."""
    gw = gateway_of(request)
    ids: list[str] = []
    while True:
        reply = await gw.threads.ListThreads(
            thread_service_pb2.ListThreadsRequest(metadata=to_struct(metadata, "metadata"), limit=1000,
                                                  offset=len(ids)),
            timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
        ids.extend(t.thread_id for t in reply.threads)
        if not reply.has_more:
            return ids


async def delete_thread(request: Request, thread_id: str) -> None:
    """LangGraph's thread delete: 404 for an unknown thread; its runs cancelled; then the
    thread purged (runs, checkpoints, events, approvals; one audit record stays)."""
    gw = gateway_of(request)
    await get_thread(request, thread_id)  # 404 first, and the caller may see it
    await cancel_thread_runs(request, thread_id)
    await gw.runs.PurgeThread(run_service_pb2.PurgeThreadRequest(
        thread_id=thread_id, reason=PURGE_REASON.format(thread_id=thread_id)),
        timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
