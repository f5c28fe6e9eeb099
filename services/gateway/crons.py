"""Crons: /runs/crons (a new thread per fire) and /threads/{thread_id}/runs/crons, search,
count, get, patch and delete, over graphmesh's ScheduleService (exactly once per
scheduled time across api replicas; docs/schedules.md).

A cron is a schedule of the assistant's graph: its input object, string metadata, a
webhook, the thread and its multitask strategy, on_run_completed, the time zone and the
end time, and the run options every fire's run gets (Schedule.options): config
(configurable, tags, recursion_limit), context, interrupt_before/after, stream_mode and
stream_subgraphs, read as a run request reads them (services/gateway/run_requests.py),
with the assistant's config and context applied under them (apply_assistant) when the
cron is created and whenever a patch names config or context. The assistant is kept in
the schedule's metadata under `assistant_id`, as the reference server tags its runs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.protobuf import field_mask_pb2, timestamp_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphmesh.assistants import system_assistant_id
from graphmesh.v1 import assistant_service_pb2, run_pb2
from graphmesh.v1 import schedule_service_pb2 as pb
from services.gateway.context import CALL_TIMEOUT
from services.gateway.errors import HTTPError
from services.gateway.jsonio import (
    get_bool,
    get_dict,
    get_enum,
    get_str,
    json_response,
    pagination_headers,
    plain,
    read_json,
    search_page,
    to_struct,
)
from services.gateway.lookups import gateway_of, get_assistant, get_thread
from services.gateway.run_requests import parse_run_request, run_options
from services.gateway.shapes import CRON_ASSISTANT_KEY, CRON_FIELDS, MULTITASK, cron_json, select_fields

ON_RUN_COMPLETED = {"delete": pb.ON_RUN_COMPLETED_DELETE, "keep": pb.ON_RUN_COMPLETED_KEEP}
SORT_BY = ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at", "updated_at")
# A cron's fields that become the run options of its fires (Schedule.options). The
# reference's stream_resumable, durability and checkpoint_during are accepted and ignored,
# as on runs (every graphmesh stream is resumable).
OPTION_FIELDS = ("config", "context", "interrupt_before", "interrupt_after", "stream_mode", "stream_subgraphs")
# Of those, the ones the assistant's config and context are applied under.
CONFIG_FIELDS = ("config", "context")
LIST_PAGE = 1000


def _metadata(value: dict | None) -> dict[str, str]:
    """Schedule metadata is strings: a string stays as it is, any other JSON value is kept
    as its JSON text (as the gateway stores run metadata)."""
    out: dict[str, str] = {}
    for key, v in (value or {}).items():
        if key == CRON_ASSISTANT_KEY:
            raise HTTPError(422, f"metadata key '{key}' is reserved: the cron's assistant is recorded there")
        out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def _asked_metadata(body: dict) -> dict | None:
    """The body's metadata with its config's under it (as a run request's); None: neither."""
    config = get_dict(body, "config")
    from_config = config.get("metadata") if config else None
    if from_config is not None and not isinstance(from_config, dict):
        raise HTTPError(422, "'config.metadata' must be an object")
    metadata = get_dict(body, "metadata")
    if from_config is None and metadata is None:
        return None
    return {**(from_config or {}), **(metadata or {})}


def _end_time(body: dict) -> timestamp_pb2.Timestamp | None:
    text = get_str(body, "end_time")
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPError(422, f"'end_time' must be an ISO 8601 date-time, got {text!r}") from None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def _input(body: dict):
    value = body.get("input")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HTTPError(422, "'input' must be an object on crons (a graphmesh schedule's input is a JSON object)")
    return to_struct(value, "input")


def cron_options(body: dict, assistant: assistant_service_pb2.Assistant,
                 current: run_pb2.RunOptions | None = None) -> run_pb2.RunOptions | None:
    """The run options of a cron's fires (None: none), with `assistant`'s config and context
    applied under the cron's own. `current`: a patched cron's options; each option field the
    body names replaces its part (null clears it) and the others stay, as the reference
    merges a patch into the cron's payload."""
    named = [k for k in OPTION_FIELDS if k in body]
    given = {k: body[k] for k in named if body[k] is not None}
    # The fields given are read and checked as a run request's are (422 naming the field).
    asked = parse_run_request({"assistant_id": assistant.assistant_id or assistant.graph, **given})
    out = run_pb2.RunOptions()
    if current is not None:
        out.CopyFrom(current)
    if current is None or any(k in named for k in CONFIG_FIELDS):
        if current is not None:
            # The part not named is the cron's own as it stands (the assistant's applying again
            # changes nothing of it); a context that only mirrored the old configurable goes.
            config = given.get("config") if "config" in named else _own_config(current)
            if "context" in named:
                context = given.get("context")
            else:
                context = None if _mirrors_configurable(current) else plain(current.context)
            asked = replace(asked, config=config or {}, context=context)
        wanted = run_options(asked, assistant)
        for field in ("configurable", "context"):
            out.ClearField(field)
            if wanted.HasField(field):
                getattr(out, field).CopyFrom(getattr(wanted, field))
        del out.tags[:]
        out.tags.extend(wanted.tags)
        out.recursion_limit = wanted.recursion_limit
    for field in ("interrupt_before", "interrupt_after"):
        if field in named or current is None:
            getattr(out, field)[:] = getattr(asked, field)
    if "stream_mode" in named:  # none unless asked: a join-stream still shows values (events.py)
        out.stream_modes[:] = asked.worker_modes if "stream_mode" in given else []
    if "stream_subgraphs" in named or current is None:
        out.stream_subgraphs = asked.stream_subgraphs
    return None if out == run_pb2.RunOptions() else out


def _own_config(options: run_pb2.RunOptions) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if options.HasField("configurable"):
        config["configurable"] = plain(options.configurable)
    if options.tags:
        config["tags"] = list(options.tags)
    if options.recursion_limit:
        config["recursion_limit"] = options.recursion_limit
    return config


def _mirrors_configurable(options: run_pb2.RunOptions) -> bool:
    """No context, or the one a run request makes from the configurable when given none."""
    return not options.HasField("context") or options.context == options.configurable


def _options_json(options: run_pb2.RunOptions) -> dict[str, Any]:
    """A schedule's run options as the cron's payload shows them: the fields of the request
    that asked for them (config and context with the assistant's applied)."""
    out: dict[str, Any] = {}
    if config := _own_config(options):
        out["config"] = config
    if options.HasField("context"):
        out["context"] = plain(options.context)
    for field in ("interrupt_before", "interrupt_after"):
        nodes = list(getattr(options, field))
        if nodes:
            out[field] = "*" if nodes == ["*"] else nodes
    if options.stream_modes:
        out["stream_mode"] = ["messages-tuple" if m == "messages" else m for m in options.stream_modes]
    if options.stream_subgraphs:
        out["stream_subgraphs"] = True
    return out


async def _cron_assistant(request: Request, schedule: pb.Schedule) -> assistant_service_pb2.Assistant:
    """The assistant a cron was created on (its graph's system assistant unless recorded)."""
    return await get_assistant(request, schedule.metadata.get(CRON_ASSISTANT_KEY) or schedule.graph)


async def _create(request: Request, thread_id: str | None):
    body = await read_json(request, required=("assistant_id", "schedule"))
    assistant = await get_assistant(request, get_str(body, "assistant_id"))
    graph, assistant_id = assistant.graph, assistant.assistant_id
    metadata = _metadata(_asked_metadata(body))
    if assistant_id != system_assistant_id(graph):
        metadata[CRON_ASSISTANT_KEY] = assistant_id
    message = pb.CreateScheduleRequest(graph=graph, cron=get_str(body, "schedule"),
                                       timezone=get_str(body, "timezone", ""), metadata=metadata)
    if (options := cron_options(body, assistant)) is not None:
        message.options.CopyFrom(options)
    if (value := _input(body)) is not None:
        message.input.CopyFrom(value)
    if (end := _end_time(body)) is not None:
        message.end_time.CopyFrom(end)
    if webhook := get_str(body, "webhook"):
        message.webhook.url = webhook
    if thread_id is not None:
        await get_thread(request, thread_id)  # 404 for an unknown thread, as the reference
        message.thread_id = thread_id
        message.multitask_strategy = MULTITASK[get_enum(body, "multitask_strategy", tuple(MULTITASK), "enqueue")]
    else:
        message.on_run_completed = ON_RUN_COMPLETED[get_enum(body, "on_run_completed", tuple(ON_RUN_COMPLETED),
                                                             "delete")]
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    schedule = (await gw.schedules.CreateSchedule(message, timeout=CALL_TIMEOUT, metadata=md)).schedule
    if get_bool(body, "enabled", True) is False:
        schedule = (await gw.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=schedule.schedule_id),
                                                     timeout=CALL_TIMEOUT, metadata=md)).schedule
    return json_response(_cron(schedule))


def _cron(schedule: pb.Schedule) -> dict[str, Any]:
    cron = cron_json(schedule, assistant_id=system_assistant_id(schedule.graph))
    if schedule.HasField("options"):
        cron["payload"].update(_options_json(schedule.options))
    return cron


async def create_cron(request: Request):
    return await _create(request, None)


async def create_thread_cron(request: Request):
    return await _create(request, request.path_params["thread_id"])


async def _get_schedule(request: Request, cron_id: str) -> pb.Schedule:
    gw = gateway_of(request)
    return (await gw.schedules.GetSchedule(pb.GetScheduleRequest(schedule_id=cron_id), timeout=CALL_TIMEOUT,
                                           metadata=gw.call_metadata(request))).schedule


async def read_cron(request: Request):
    return json_response(_cron(await _get_schedule(request, request.path_params["cron_id"])))


async def patch_cron(request: Request):
    cron_id = request.path_params["cron_id"]
    body = await read_json(request)
    if not body:
        raise HTTPError(400, "Request body cannot be empty")
    current = await _get_schedule(request, cron_id)
    changes = pb.Schedule(schedule_id=cron_id)
    paths: list[str] = []
    if (cron := get_str(body, "schedule")) is not None:
        changes.cron, paths = cron, [*paths, "cron"]
    if (timezone := get_str(body, "timezone")) is not None:
        changes.timezone, paths = timezone, [*paths, "timezone"]
    if "end_time" in body:  # null clears it
        if (end := _end_time(body)) is not None:
            changes.end_time.CopyFrom(end)
        paths.append("end_time")
    if (value := _input(body)) is not None:
        changes.input.CopyFrom(value)
        paths.append("input")
    if (metadata := _asked_metadata(body)) is not None:  # merged, as the reference
        changes.metadata.update({**dict(current.metadata), **_metadata(metadata)})
        paths.append("metadata")
    if (webhook := get_str(body, "webhook")) is not None:
        changes.webhook.url = webhook
        paths.append("webhook")
    if (completed := get_enum(body, "on_run_completed", tuple(ON_RUN_COMPLETED))) is not None:
        if current.thread_id:
            raise HTTPError(422, "'on_run_completed' applies to crons that make a new thread per run, not a thread's")
        changes.on_run_completed = ON_RUN_COMPLETED[completed]
        paths.append("on_run_completed")
    if (strategy := get_enum(body, "multitask_strategy", tuple(MULTITASK))) is not None:
        changes.multitask_strategy = MULTITASK[strategy]
        paths.append("multitask_strategy")
    if any(k in body for k in OPTION_FIELDS):
        # The assistant is asked for only when its config applies again.
        assistant = await _cron_assistant(request, current) if any(k in body for k in CONFIG_FIELDS) else \
            assistant_service_pb2.Assistant(graph=current.graph)
        options = cron_options(body, assistant, current.options if current.HasField("options") else
                               run_pb2.RunOptions())
        if options is not None:
            changes.options.CopyFrom(options)
        paths.append("options")
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    schedule = current
    if paths:
        schedule = (await gw.schedules.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=changes, update_mask=field_mask_pb2.FieldMask(paths=paths)),
            timeout=CALL_TIMEOUT, metadata=md)).schedule
    enabled = get_bool(body, "enabled")
    paused = schedule.state == pb.SCHEDULE_STATE_PAUSED
    if enabled is False and not paused:
        schedule = (await gw.schedules.PauseSchedule(pb.PauseScheduleRequest(schedule_id=cron_id),
                                                     timeout=CALL_TIMEOUT, metadata=md)).schedule
    elif enabled is True and paused:
        schedule = (await gw.schedules.ResumeSchedule(pb.ResumeScheduleRequest(schedule_id=cron_id),
                                                      timeout=CALL_TIMEOUT, metadata=md)).schedule
    return json_response(_cron(schedule))


async def delete_cron(request: Request):
    gw = gateway_of(request)
    await gw.schedules.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id=request.path_params["cron_id"]),
                                      timeout=CALL_TIMEOUT, metadata=gw.call_metadata(request))
    return Response(status_code=204)


async def _matching(request: Request, body: dict) -> list[dict[str, Any]]:
    """Every cron the caller may see that matches the search filters, as Cron JSON.
    ScheduleService filters by graph only: the rest is filtered here."""
    graph, assistant_id = "", None
    if ref := get_str(body, "assistant_id"):
        assistant = await get_assistant(request, ref)
        graph, assistant_id = assistant.graph, assistant.assistant_id
    thread_id = get_str(body, "thread_id")
    enabled = get_bool(body, "enabled")
    metadata = get_dict(body, "metadata") or {}
    wanted = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    gw = gateway_of(request)
    md = gw.call_metadata(request)
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        reply = await gw.schedules.ListSchedules(pb.ListSchedulesRequest(graph=graph, page_size=LIST_PAGE,
                                                                         page_token=token),
                                                 timeout=CALL_TIMEOUT, metadata=md)
        for schedule in reply.schedules:
            cron = _cron(schedule)
            if assistant_id is not None and cron["assistant_id"] != assistant_id:
                continue
            if thread_id is not None and cron["thread_id"] != thread_id:
                continue
            if enabled is not None and cron["enabled"] != enabled:
                continue
            if any(schedule.metadata.get(k) != v for k, v in wanted.items()):
                continue
            found.append(cron)
        token = reply.next_page_token
        if not token:
            return found


async def search_crons(request: Request):
    body = await read_json(request)
    page = search_page(body, sort_fields=SORT_BY, default_sort="created_at", fields=CRON_FIELDS)
    crons = await _matching(request, body)
    present = sorted((c for c in crons if c[page.sort_by] is not None), key=lambda c: c[page.sort_by],
                     reverse=not page.ascending)
    crons = present + [c for c in crons if c[page.sort_by] is None]  # nulls last either way
    end = page.offset + page.limit
    shown = crons[page.offset:end]
    headers = pagination_headers(len(shown), page.offset, end if len(crons) > end else None)
    return json_response([select_fields(c, page.select) for c in shown], headers=headers)


async def count_crons(request: Request):
    body = await read_json(request)
    return json_response(len(await _matching(request, body)))


def routes() -> list[BaseRoute]:
    return [
        Route("/runs/crons", create_cron, methods=["POST"]),
        Route("/runs/crons/search", search_crons, methods=["POST"]),
        Route("/runs/crons/count", count_crons, methods=["POST"]),
        Route("/runs/crons/{cron_id}", read_cron, methods=["GET"]),
        Route("/runs/crons/{cron_id}", patch_cron, methods=["PATCH"]),
        Route("/runs/crons/{cron_id}", delete_cron, methods=["DELETE"]),
        Route("/threads/{thread_id}/runs/crons", create_thread_cron, methods=["POST"]),
    ]
