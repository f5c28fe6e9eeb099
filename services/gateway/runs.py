"""The runs endpoints of the LangGraph HTTP API: create (background), wait and stream, on a
thread and stateless; list, get, delete, join, join-stream and cancel.

A run here is a graphmesh run (CreateRun), visible from gRPC and the CLI too; a stream is
its event log (StreamRun) shown as the reference server's Server-Sent Events
(services/gateway/events.py, sse.py). Differences from the reference (docs/langgraph-api.md):

- A thread waiting at an interrupt holds a graphmesh run (WAITING_FOR_APPROVAL). New input
  on it (no command.resume) is created with multitask_strategy interrupt, so the api cancels
  that run once it accepted the new one (LangGraph drops an unanswered interrupt when new
  input comes; a refused request cancels nothing); command.resume decides its approvals instead
  (services/gateway/resume.py) and the response follows that same run from where it resumes,
  with the stream modes it was created with (modes it lacks come from graphmesh's own
  events: events.py). command.resume cannot be combined with update/goto (422).
- A graphmesh thread belongs to one graph: a run of another graph's assistant on it is 409.
- A stateless run's thread is purged once the run has ended and its response was read
  (on_completion=delete), by the gateway that created it; if that replica stops first, or the
  run waits at an interrupt, or has a webhook (whose delivery a purge would take), it stays.
- DELETE of a single run removes its record, events, approvals and spans (RunService.DeleteRun,
  one audit record stays); the thread's checkpoints stay, as later runs continue from them.
- after_seconds: the run is pending at once and starts when due; Send packets in command.goto
  are 422.
- A stateless stream's Location is its thread's /threads/{id}/runs/{id}/stream, so the SDK's
  reconnect works (the reference names /runs/{id}/stream, which it does not serve).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphmesh.rpc.errors import error_code
from graphmesh.v1 import run_pb2, thread_pb2, thread_service_pb2
from graphmesh.v1 import run_service_pb2 as pb
from services.gateway.context import CALL_TIMEOUT
from services.gateway.errors import HTTPError
from services.gateway.events import (
    TERMINAL,
    Follower,
    StreamView,
    decision_sequence,
    run_result,
    sse_events,
    state_at_rest,
)
from services.gateway.jsonio import dumps, json_response, query_bool, query_int, read_json
from services.gateway.lookups import (
    RESTING_AT_INTERRUPT,
    gateway_of,
    get_thread,
    run_assistant,
    run_thread,
    tag_run_thread,
)
from services.gateway.resume import resume
from services.gateway.run_requests import RunRequest, create_run_request, parse_run_request
from services.gateway.run_shapes import STATUS_FILTER, TIMEOUT_CODES, run_json
from services.gateway.shapes import select_fields
from services.gateway.sse import Position, json_wait_response, parse_last_event_id, sse_response

log = logging.getLogger(__name__)

BUSY_DETAIL = "Thread is already running a task. Wait for it to finish or choose a different multitask strategy."
# Tasks that outlive their request (cancel on disconnect, purging a stateless run's thread):
# held here so they are not collected while they run.
_background: set[asyncio.Task] = set()


def _spawn(coro) -> asyncio.Task:
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


@dataclass
class Started:
    """A run a request created (or resumed), and where its response follows it from."""

    run: run_pb2.Run
    thread_id: str
    request: RunRequest
    after: int = 0  # the stream shows the run's events after this sequence
    temporary: "Temporary | None" = None
    resting: int = 0  # the status the response saw the run come to rest in (0: not yet)

    def rested(self, status: int) -> None:
        self.resting = status

    @property
    def location(self) -> str:
        return f"/threads/{self.thread_id}/runs/{self.run.run_id}"

    def headers(self, stateless: bool, tail: str, modes: list[str] | None = None) -> dict[str, str]:
        # Location is where a client reconnects (the SDK's reconnect follows it); a stateless
        # run's thread path works too, so that one is given rather than the reference's /runs/...
        return {"Location": f"{self.location}/{tail}{modes_query(modes)}",
                "Content-Location": f"/runs/{self.run.run_id}" if stateless else self.location}


def modes_query(modes: list[str] | None) -> str:
    """The stream modes as a stream URL's query: a reconnect to the Location (which the SDKs
    follow as given) shows the stream the client asked for, not the modes the run carries
    (those are worker modes: "messages" for messages-tuple, legacy messages and events
    alike), so ids like N:0 mean the same events after the reconnect."""
    return "?" + urlencode([("stream_mode", m) for m in modes]) if modes else ""


# -- creating and resuming --------------------------------------------------------------


async def start_run(request: Request, thread_id: str | None) -> Started:
    """Creates the run a request body asks for (thread_id None: stateless), or resumes the
    interrupted run its command.resume answers."""
    req = parse_run_request(await read_json(request, required=("assistant_id",)))
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    continue_thread = False
    if req.resumes:
        if thread_id is None:
            raise HTTPError(400, "You must provide a thread_id when resuming.")
        if req.command.update is not None or req.command.goto:
            raise HTTPError(422, "command.resume cannot be combined with command.update or command.goto here: the "
                                 "resumed run continues as it was created (send the update as its own run)")
        resumed = await resume(  # its GetThread answers 404 for an unknown thread
            gw.review, gw.threads, md, thread_id, req.command.resume)
        if resumed is None:
            # A client that read the interrupt off the stream can ask before the run has
            # recorded it (RemoteGraph raises GraphInterrupt at the chunk): the run rests first.
            await _settle_active_run(gw, md, thread_id)
            resumed = await resume(gw.review, gw.threads, md, thread_id, req.command.resume)
        if resumed is not None:
            run = await _get_run(gw, md, resumed.run_id)
            after = await decision_sequence(gw.runs, md, run.run_id, set(resumed.approval_ids))
            return Started(run, thread_id, req, after=max(0, after - 1))
        thread = await get_thread(request, thread_id)
        if thread.status != thread_pb2.THREAD_STATUS_INTERRUPTED or thread.active_run_id:
            raise HTTPError(409, f"thread {thread_id} has no pending interrupt to resume")
        continue_thread = True  # stopped at a static interrupt: a run without input goes on
    assistant = await run_assistant(request, req.assistant_id)
    stateless = thread_id is None
    thread_id = thread_id or str(uuid.uuid4())
    # Everything the gateway can check is checked before anything changes (422 here).
    create = create_run_request(req, assistant, thread_id, continue_thread=continue_thread)
    thread = await run_thread(request, thread_id, assistant, create=stateless or req.if_not_exists == "create",
                              metadata=req.raw_metadata)
    if await _waits_at_interrupt(gw, md, thread):
        # New input drops the unanswered interrupt (as LangGraph does): graphmesh's run
        # waiting there is cancelled by the api itself, after it checked and recorded the
        # new run (multitask interrupt, checkpoints kept), so a refused request cancels nothing.
        create.multitask_strategy = run_pb2.MULTITASK_STRATEGY_INTERRUPT
    try:
        run = (await gw.runs.CreateRun(create, timeout=CALL_TIMEOUT, metadata=md)).run
    except grpc.aio.AioRpcError as exc:
        if error_code(exc) == "THREAD_BUSY":
            raise HTTPError(409, BUSY_DETAIL) from None
        raise
    try:
        await tag_run_thread(request, thread, assistant)
    except grpc.aio.AioRpcError as exc:  # the run is created and goes on: its response is not refused for this
        log.warning("run %s: thread %s not tagged with its graph and assistant: %s", run.run_id, thread_id,
                    exc.details())
    started = Started(run, thread_id, req)
    if stateless and req.on_completion == "delete":
        if req.webhook:
            log.info("stateless run %s has a webhook: its thread %s is kept for the delivery", run.run_id, thread_id)
        else:
            started.temporary = Temporary(gw, md, run.run_id, thread_id)
    return started


async def _settle_active_run(gw, md: tuple, thread_id: str) -> None:
    """Waits until the thread's queued or running run (if any) rests."""
    thread = (await gw.threads.GetThread(thread_service_pb2.GetThreadRequest(thread_id=thread_id),
                                         timeout=CALL_TIMEOUT, metadata=md)).thread
    if not thread.active_run_id:
        return
    run = await _get_run(gw, md, thread.active_run_id)
    if run.status in (run_pb2.RUN_STATUS_QUEUED, run_pb2.RUN_STATUS_RUNNING):
        async for _ in Follower(gw.runs, gw.threads, gw.review, md, run.run_id, thread_id).events():
            pass


async def _waits_at_interrupt(gw, md: tuple, thread: thread_pb2.Thread) -> bool:
    """Whether the thread's active run rests at an interrupt (waiting for approval, or paused)."""
    if thread.status != thread_pb2.THREAD_STATUS_INTERRUPTED or not thread.active_run_id:
        return False
    active = await _get_run(gw, md, thread.active_run_id)
    return active.status in RESTING_AT_INTERRUPT


async def _get_run(gw, md: tuple, run_id: str) -> run_pb2.Run:
    return (await gw.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=CALL_TIMEOUT, metadata=md)).run


async def _run_on_thread(request: Request) -> run_pb2.Run:
    """The run the path names, 404 unless it is a run of the path's thread."""
    gw = gateway_of(request)
    thread_id, run_id = request.path_params["thread_id"], request.path_params["run_id"]
    try:
        run = await _get_run(gw, gw.call_metadata(request), run_id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise HTTPError(404, "Run not found") from None
        raise
    if run.thread_id != thread_id:
        raise HTTPError(404, "Run not found")
    return run


class Temporary:
    """A stateless run's thread, purged once the run has ended and its response was read
    (release()). A run resting at an interrupt or pause keeps its thread. The response
    that followed the run to its rest says where it rests (release(resting)); only when it
    could not (its client left first, its event stream broke) is the run followed here,
    so a run's events are read once, not twice."""

    def __init__(self, gw, md: tuple, run_id: str, thread_id: str) -> None:
        self._released = asyncio.Event()
        self._resting = 0
        _spawn(self._purge(gw, md, run_id, thread_id))

    def release(self, resting: int = 0) -> None:
        """resting: the status the response saw the run rest in (0: not seen)."""
        self._resting = resting
        self._released.set()

    async def _purge(self, gw, md: tuple, run_id: str, thread_id: str) -> None:
        try:
            await self._released.wait()
            resting = self._resting
            if not resting:
                follower = Follower(gw.runs, gw.threads, gw.review, md, run_id, thread_id)
                async for _ in follower.events():
                    pass
                resting = follower.resting
            if resting not in TERMINAL:
                log.info("stateless run %s rests at %s: its thread %s is kept", run_id,
                         run_pb2.RunStatus.Name(resting or 0), thread_id)
                return
            await gw.runs.PurgeThread(pb.PurgeThreadRequest(
                thread_id=thread_id, reason="stateless run ended (LangGraph HTTP API, on_completion=delete)"),
                timeout=CALL_TIMEOUT, metadata=md)
        except Exception as exc:  # the thread stays: logged, never raised into a request
            log.warning("stateless run %s: its thread %s was not purged: %s", run_id, thread_id, exc)


def _releaser(started: Started):
    if started.temporary is None:
        return None
    return lambda: started.temporary.release(started.resting)


def _canceller(gw, md: tuple, run_id: str, why: str):
    async def cancel() -> None:
        async def call() -> None:
            try:
                await gw.runs.CancelRun(pb.CancelRunRequest(run_id=run_id, action=pb.CANCEL_ACTION_INTERRUPT,
                                                            reason=why), timeout=CALL_TIMEOUT, metadata=md)
            except grpc.aio.AioRpcError as exc:
                log.info("run %s: not cancelled after its client left: %s", run_id, exc.details())
        _spawn(call())
    return cancel


# -- streams ------------------------------------------------------------------------------


def _stream_response(request: Request, started: Started, stateless: bool) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    req = started.request
    view = StreamView(modes=req.stream_modes, carried=set(started.run.options.stream_modes))
    body = sse_events(gw, md, started.run, started.thread_id, view, Position(after=started.after),
                      metadata_event=True, on_rest=started.rested)
    on_disconnect = None
    if req.on_disconnect == "cancel":
        on_disconnect = _canceller(gw, md, started.run.run_id,
                                   "client disconnected from the run stream (on_disconnect=cancel)")
    return sse_response(body, interval=gw.settings.gateway_heartbeat_seconds, stopping=gw.stopping,
                        on_disconnect=on_disconnect, on_close=_releaser(started),
                        headers=started.headers(stateless, "stream", req.stream_modes))


async def stream_on_thread(request: Request) -> Response:
    return _stream_response(request, await start_run(request, request.path_params["thread_id"]), False)


async def stream_stateless(request: Request) -> Response:
    return _stream_response(request, await start_run(request, None), True)


def parse_stream_modes(request: Request) -> list[str]:
    """stream_mode query parameters: repeated, or one JSON array (the JS SDK's form)."""
    modes: list[str] = []
    for raw in request.query_params.getlist("stream_mode"):
        if raw.startswith("["):
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise HTTPError(422, f"stream_mode {raw[:60]!r} is not a JSON array") from None
            modes.extend(str(m) for m in parsed)
        elif raw:
            modes.append(raw)
    return list(dict.fromkeys(modes))


def default_modes(run: run_pb2.Run) -> list[str]:
    """What a join-stream without stream_mode shows: the modes the run carries (messages as
    messages-tuple), or graphmesh's own progress for a run created without any."""
    carried = [("messages-tuple" if m == "messages" else m) for m in run.options.stream_modes]
    return carried or ["values", "updates", "custom"]


async def join_stream(request: Request) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    run = await _run_on_thread(request)
    position = parse_last_event_id(request.headers.get("last-event-id"))
    modes = parse_stream_modes(request) or default_modes(run)
    view = StreamView(modes=modes, carried=set(run.options.stream_modes))
    body = sse_events(gw, md, run, run.thread_id, view, position or Position(), metadata_event=position is None)
    on_disconnect = None
    if query_bool(request, "cancel_on_disconnect"):
        on_disconnect = _canceller(gw, md, run.run_id, "client disconnected from the run stream (cancel_on_disconnect)")
    location = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return sse_response(body, interval=gw.settings.gateway_heartbeat_seconds, stopping=gw.stopping,
                        on_disconnect=on_disconnect,
                        headers={"Location": f"{location}/stream{modes_query(modes)}", "Content-Location": location})


# -- waits --------------------------------------------------------------------------------


def _wait_body(gw, md: tuple, started: Started) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        try:
            result = await run_result(gw, md, started.run, started.thread_id, started.after, on_rest=started.rested)
        except grpc.aio.AioRpcError as exc:  # the status line is sent: the failure goes in the body
            result = {"__error__": {"error": exc.code().name, "message": exc.details() or "the wait failed"}}
        yield dumps(result).encode()
    return body()


def _wait_response(request: Request, started: Started, stateless: bool) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    on_disconnect = None
    if started.request.on_disconnect == "cancel":
        on_disconnect = _canceller(gw, md, started.run.run_id, "client disconnected while waiting (on_disconnect=cancel)")
    return json_wait_response(_wait_body(gw, md, started), interval=gw.settings.gateway_heartbeat_seconds,
                              stopping=gw.stopping, on_disconnect=on_disconnect, on_close=_releaser(started),
                              headers=started.headers(stateless, "join"))


async def wait_on_thread(request: Request) -> Response:
    return _wait_response(request, await start_run(request, request.path_params["thread_id"]), False)


async def wait_stateless(request: Request) -> Response:
    return _wait_response(request, await start_run(request, None), True)


async def join(request: Request) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    run = await _run_on_thread(request)
    location = f"/threads/{run.thread_id}/runs/{run.run_id}"

    async def body() -> AsyncIterator[bytes]:
        if run.status == run_pb2.RUN_STATUS_WAITING_FOR_APPROVAL:
            follower = Follower(gw.runs, gw.threads, gw.review, md, run.run_id, run.thread_id)
            follower.resting = run.status
            yield dumps(await state_at_rest(gw, md, run.thread_id, follower)).encode()
        else:
            yield dumps(await run_result(gw, md, run, run.thread_id)).encode()

    on_disconnect = None
    if query_bool(request, "cancel_on_disconnect"):
        on_disconnect = _canceller(gw, md, run.run_id, "client disconnected while joining (cancel_on_disconnect)")
    return json_wait_response(body(), interval=gw.settings.gateway_heartbeat_seconds, stopping=gw.stopping,
                              on_disconnect=on_disconnect,
                              headers={"Location": f"{location}/join", "Content-Location": location})


# -- background runs, reads, cancel ------------------------------------------------------


async def create_on_thread(request: Request) -> Response:
    started = await start_run(request, request.path_params["thread_id"])
    return json_response(run_json(started.run), headers={"Content-Location": started.location})


async def create_stateless(request: Request) -> Response:
    started = await start_run(request, None)
    if started.temporary is not None:
        started.temporary.release()  # nobody reads a background run's result here
    return json_response(run_json(started.run), headers={"Content-Location": f"/runs/{started.run.run_id}"})


class _BatchItem(Request):
    """One payload of /runs/batch handed to start_run as if it were its own request."""

    def __init__(self, request: Request, payload: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._body = dumps(payload).encode()


async def create_batch(request: Request) -> Response:
    raw = await request.body()
    try:
        payloads = json.loads(raw or b"null")
    except ValueError:
        raise HTTPError(422, "Invalid JSON in request body") from None
    if not isinstance(payloads, list) or not all(isinstance(p, dict) for p in payloads):
        raise HTTPError(422, "the request body must be an array of run objects")
    runs = []
    for payload in payloads:
        started = await start_run(_BatchItem(request, payload), None)
        if started.temporary is not None:
            started.temporary.release()
        runs.append(run_json(started.run))
    return json_response(runs)


async def list_runs(request: Request) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    thread_id = request.path_params["thread_id"]
    limit = query_int(request, "limit", 10, minimum=1, maximum=1000)
    offset = query_int(request, "offset", 0, minimum=0)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUS_FILTER:
        raise HTTPError(422, f"'status' must be one of {', '.join(STATUS_FILTER)}, got {status!r}")
    await get_thread(request, thread_id)  # 404 for an unknown thread
    found: list[run_pb2.Run] = []
    token = ""
    while len(found) < offset + limit:
        reply = await gw.runs.ListRuns(pb.ListRunsRequest(
            thread_id=thread_id, statuses=STATUS_FILTER[status] if status else [], page_size=1000, page_token=token),
            timeout=CALL_TIMEOUT, metadata=md)
        found.extend(r for r in reply.runs if status not in ("timeout", "error")
                     or (r.error.code in TIMEOUT_CODES) == (status == "timeout"))
        token = reply.next_page_token
        if not token:
            break
    select = request.query_params.getlist("select") or None
    return json_response([select_fields(run_json(r), select) for r in found[offset:offset + limit]])


async def get_run(request: Request) -> Response:
    return json_response(run_json(await _run_on_thread(request)))


async def delete_run(request: Request) -> Response:
    """RunService.DeleteRun: the run's record, events, approvals and spans go; the thread and
    its checkpoints stay. 409 while the run is in progress (the api's RUN_ACTIVE)."""
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    run = await _run_on_thread(request)
    if run.status not in TERMINAL:
        raise HTTPError(409, f"run {run.run_id} is still {run_json(run)['status']}: cancel it first")
    await gw.runs.DeleteRun(pb.DeleteRunRequest(run_id=run.run_id, reason="DELETE /threads/{thread_id}/runs/"
                                                "{run_id} (LangGraph HTTP API)"), timeout=CALL_TIMEOUT, metadata=md)
    return Response(status_code=204)


async def cancel(request: Request) -> Response:
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    run = await _run_on_thread(request)
    action = request.query_params.get("action", "interrupt")
    action = action if action in ("interrupt", "rollback") else "interrupt"  # as the reference
    await _cancel(gw, md, run, action, "POST /threads/{thread_id}/runs/{run_id}/cancel")
    if not query_bool(request, "wait"):
        return Response(status_code=202)
    location = f"/threads/{run.thread_id}/runs/{run.run_id}"

    async def body() -> AsyncIterator[bytes]:
        yield dumps(await run_result(gw, md, await _get_run(gw, md, run.run_id), run.thread_id)).encode()

    return json_wait_response(body(), interval=gw.settings.gateway_heartbeat_seconds, stopping=gw.stopping,
                              headers={"Location": f"{location}/join", "Content-Location": location})


async def _cancel(gw, md: tuple, run: run_pb2.Run, action: str, via: str) -> None:
    if run.status in TERMINAL:
        raise HTTPError(404, "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and "
                             "the runs haven't been deleted or completed.")
    try:
        await gw.runs.CancelRun(pb.CancelRunRequest(
            run_id=run.run_id, action=pb.CANCEL_ACTION_ROLLBACK if action == "rollback" else pb.CANCEL_ACTION_INTERRUPT,
            reason=f"{action} requested via {via} (LangGraph HTTP API)"), timeout=CALL_TIMEOUT, metadata=md)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and (await _get_run(gw, md, run.run_id)).status in TERMINAL:
            raise HTTPError(404, "No matching runs to cancel: the run has ended.") from None
        raise


async def cancel_many(request: Request) -> Response:
    """POST /runs/cancel: {thread_id, run_ids} or {status: pending | running | all}."""
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    body = await read_json(request)
    action = request.query_params.get("action", "interrupt")
    action = action if action in ("interrupt", "rollback") else "interrupt"
    status = body.get("status")
    if status is not None:
        if body.get("thread_id") or body.get("run_ids"):
            raise HTTPError(422, "Cannot specify 'thread_id' or 'run_ids' when using 'status'")
        wanted = {"pending": [run_pb2.RUN_STATUS_QUEUED], "running": [run_pb2.RUN_STATUS_RUNNING],
                  "all": [run_pb2.RUN_STATUS_QUEUED, run_pb2.RUN_STATUS_RUNNING]}.get(str(status).lower())
        if wanted is None:
            raise HTTPError(422, "Invalid status: must be 'pending', 'running', or 'all'")
        runs, token = [], ""
        while True:
            reply = await gw.runs.ListRuns(pb.ListRunsRequest(statuses=wanted, page_size=1000, page_token=token),
                                           timeout=CALL_TIMEOUT, metadata=md)
            runs.extend(reply.runs)
            token = reply.next_page_token
            if not token:
                break
    else:
        thread_id, run_ids = body.get("thread_id"), body.get("run_ids")
        if not isinstance(thread_id, str) or not isinstance(run_ids, list) or not run_ids:
            raise HTTPError(422, "Must provide either a status or both 'thread_id' and 'run_ids'")
        runs = [await _get_run(gw, md, str(r)) for r in run_ids]
        runs = [r for r in runs if r.thread_id == thread_id]
    cancellable = [r for r in runs if r.status not in TERMINAL]
    if not cancellable and status is None:
        raise HTTPError(404, "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and "
                             "the runs haven't been deleted or completed.")
    for run in cancellable:
        try:
            await _cancel(gw, md, run, action, "POST /runs/cancel")
        except HTTPError:
            pass  # ended meanwhile
    return Response(status_code=204)


def routes() -> list:
    return [
        Route("/runs/stream", stream_stateless, methods=["POST"]),
        Route("/runs/wait", wait_stateless, methods=["POST"]),
        Route("/runs/batch", create_batch, methods=["POST"]),
        Route("/runs/cancel", cancel_many, methods=["POST"]),
        Route("/runs", create_stateless, methods=["POST"]),
        Route("/threads/{thread_id}/runs/stream", stream_on_thread, methods=["POST"]),
        Route("/threads/{thread_id}/runs/wait", wait_on_thread, methods=["POST"]),
        Route("/threads/{thread_id}/runs", create_on_thread, methods=["POST"]),
        Route("/threads/{thread_id}/runs", list_runs, methods=["GET"]),
        Route("/threads/{thread_id}/runs/{run_id}/join", join, methods=["GET"]),
        Route("/threads/{thread_id}/runs/{run_id}/stream", join_stream, methods=["GET"]),
        Route("/threads/{thread_id}/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/threads/{thread_id}/runs/{run_id}", get_run, methods=["GET"]),
        Route("/threads/{thread_id}/runs/{run_id}", delete_run, methods=["DELETE"]),
    ]


__all__ = ["routes", "start_run"]
