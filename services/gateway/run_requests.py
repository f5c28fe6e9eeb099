"""A LangGraph run request (the body of POST .../runs, /runs/stream, /runs/wait) read and
checked, and turned into graphmesh's CreateRunRequest with its RunOptions.

What each field becomes (docs/langgraph-api.md):

    assistant_id        the graph (an assistant id or a graph name); the assistant's config and
                        context apply under the run's own (the run's keys win, tags add up)
    input               CreateRunRequest.input (null: the run continues its thread)
    command             resume: the thread's pending interrupts are answered (services/gateway/resume.py);
                        update / goto: RunOptions.command_update / command_goto
    config              configurable, tags, recursion_limit -> RunOptions; metadata -> run metadata
    context             RunOptions.context (without one, the config's configurable, as the reference)
    metadata            run metadata: strings kept, other values as their JSON text
    stream_mode         RunOptions.stream_modes (messages-tuple and messages both carry "messages")
    stream_subgraphs    RunOptions.stream_subgraphs
    interrupt_before/after, checkpoint / checkpoint_id, webhook    RunOptions / CreateRunRequest.webhook
    multitask_strategy  graphmesh's (default enqueue, as the reference)
    if_not_exists       reject (default): an unknown thread is 404; create: the thread is created
    on_disconnect       cancel | continue (default): what a stream's or a wait's client leaving does
    on_completion       stateless runs: delete (default) purges the thread once the run ended; keep
    after_seconds       RunOptions.after_seconds (rounded up to whole seconds): the run is pending
                        at once and starts when due
    feedback_keys, stream_resumable, durability, checkpoint_during, langsmith_tracer, strict_resume
                        accepted and ignored (every graphmesh stream is resumable)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from graphmesh.assistants import apply_assistant
from graphmesh.execution.run_options import MAX_AFTER_SECONDS
from graphmesh.v1 import assistant_service_pb2, run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from services.gateway.errors import HTTPError
from services.gateway.jsonio import (
    INT_MAX,
    get_bool,
    get_dict,
    get_enum,
    get_number,
    get_str,
    get_str_list,
    to_struct,
    to_value,
)
from services.gateway.run_shapes import ASSISTANT_KEY
from services.gateway.shapes import MULTITASK

# What the client may ask to stream (openapi: StreamMode).
CLIENT_MODES = ("values", "messages", "messages-tuple", "tasks", "checkpoints", "updates", "events", "debug",
                "custom")
# A client's mode -> the LangGraph mode the worker carries for it ("events" is rebuilt from
# graphmesh's node events plus the chat models' token chunks).
WORKER_MODE = {"messages-tuple": "messages", "messages": "messages", "events": "messages"}


@dataclass
class Command:
    resume: Any = None
    has_resume: bool = False
    update: Any = None
    goto: list[str] = field(default_factory=list)


@dataclass
class RunRequest:
    assistant_id: str
    input: dict | None
    command: Command | None
    config: dict
    context: dict | None
    metadata: dict[str, str]  # as graphmesh keeps run metadata (strings)
    raw_metadata: dict[str, Any]  # as given (a new thread's metadata takes it)
    stream_modes: list[str]
    stream_subgraphs: bool
    interrupt_before: list[str]
    interrupt_after: list[str]
    checkpoint_id: str
    multitask_strategy: str
    if_not_exists: str
    on_disconnect: str
    on_completion: str
    webhook: str | None
    after_seconds: int = 0

    @property
    def resumes(self) -> bool:
        return self.command is not None and self.command.has_resume

    @property
    def worker_modes(self) -> list[str]:
        modes: list[str] = []
        for mode in self.stream_modes:
            name = WORKER_MODE.get(mode, mode)
            if name not in modes:
                modes.append(name)
        return modes


def parse_run_request(body: Mapping[str, Any]) -> RunRequest:
    """The body checked field by field (422 naming the field), defaults as the reference's."""
    assistant_id = get_str(body, "assistant_id")
    if not assistant_id:
        raise HTTPError(422, "'assistant_id' is a required property")
    raw_input = body.get("input")
    if raw_input is not None and not isinstance(raw_input, dict):
        raise HTTPError(422, "'input' must be an object or null: graphmesh runs take a JSON object as input")
    config = get_dict(body, "config", {}) or {}
    configurable = config.get("configurable") or {}
    if not isinstance(configurable, dict):
        raise HTTPError(422, "'config.configurable' must be an object")
    context = get_dict(body, "context")
    if configurable and context:
        # The reference's rule: context replaces configurable (LangGraph 0.6), not both at once.
        raise HTTPError(400, "Cannot specify both configurable and context. Prefer setting context alone. Context "
                             "was introduced in LangGraph 0.6.0 and is the long term planned replacement for "
                             "configurable.")
    after_seconds = get_number(body, "after_seconds", 0.0) or 0.0
    if not 0 <= after_seconds <= MAX_AFTER_SECONDS:
        raise HTTPError(422, f"'after_seconds' must be between 0 and {MAX_AFTER_SECONDS} (a week); "
                             "for later starts, create a cron (POST /runs/crons)")
    checkpoint_id = get_str(body, "checkpoint_id") or ""
    checkpoint = get_dict(body, "checkpoint")
    if checkpoint and not checkpoint_id:
        checkpoint_id = str(checkpoint.get("checkpoint_id") or "")
    raw_metadata = {**_dict(config.get("metadata"), "config.metadata"), **(get_dict(body, "metadata", {}) or {})}
    modes = get_str_list(body, "stream_mode") or ["values"]
    unknown = [m for m in modes if m not in CLIENT_MODES]
    if unknown:
        raise HTTPError(422, f"'stream_mode' has unknown mode(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(CLIENT_MODES)}")
    return RunRequest(
        assistant_id=assistant_id,
        input=raw_input,
        command=_command(body.get("command")),
        config=config,
        context=context,
        metadata=_metadata(raw_metadata),
        raw_metadata=raw_metadata,
        stream_modes=list(dict.fromkeys(modes)),
        stream_subgraphs=bool(get_bool(body, "stream_subgraphs", False)),
        interrupt_before=_nodes(body, "interrupt_before"),
        interrupt_after=_nodes(body, "interrupt_after"),
        checkpoint_id=checkpoint_id,
        multitask_strategy=get_enum(body, "multitask_strategy", tuple(MULTITASK), "enqueue"),
        if_not_exists=get_enum(body, "if_not_exists", ("create", "reject"), "reject"),
        on_disconnect=get_enum(body, "on_disconnect", ("cancel", "continue"), "continue"),
        on_completion=get_enum(body, "on_completion", ("delete", "keep"), "delete"),
        webhook=get_str(body, "webhook"),
        after_seconds=math.ceil(after_seconds),
    )


def _dict(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HTTPError(422, f"'{name}' must be an object")
    return value


def _nodes(body: Mapping[str, Any], name: str) -> list[str]:
    """A list of node names, or "*" for all of them."""
    value = body.get(name)
    if value == "*":
        return ["*"]
    return get_str_list(body, name, []) or []


def _command(value: Any) -> Command | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HTTPError(422, "'command' must be an object with resume, update and/or goto")
    goto = value.get("goto")
    if goto is None:
        gotos: list[str] = []
    elif isinstance(goto, str):
        gotos = [goto]
    elif isinstance(goto, list) and all(isinstance(g, str) for g in goto):
        gotos = list(goto)
    else:
        # Send(node, input) packets are LangGraph's too, but graphmesh's options carry node names.
        raise HTTPError(422, "'command.goto' must be a node name or a list of node names (Send packets are not "
                             "supported by graphmesh's gateway)")
    return Command(resume=value.get("resume"), has_resume="resume" in value and value["resume"] is not None,
                   update=value.get("update"), goto=gotos)


def _metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """graphmesh keeps run metadata as strings: strings stay, anything else as its JSON text."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                                        ensure_ascii=False)
    return out


def _synced(assistant: assistant_service_pb2.Assistant) -> assistant_service_pb2.Assistant:
    """The assistant with its configurable standing in for a context it lacks: the reference
    keeps an assistant's config.configurable and context the same, so graphs reading their
    runtime context see what the assistant was configured with."""
    if assistant.HasField("context") and assistant.context.fields:
        return assistant
    configurable = assistant.config.fields.get("configurable") if assistant.HasField("config") else None
    if configurable is None or not configurable.struct_value.fields:
        return assistant
    synced = assistant_service_pb2.Assistant()
    synced.CopyFrom(assistant)
    synced.context.CopyFrom(configurable.struct_value)
    return synced


def run_options(request: RunRequest, assistant: assistant_service_pb2.Assistant) -> run_pb2.RunOptions:
    """The run's RunOptions: its own config, context and modes, under which the assistant's
    apply (graphmesh.assistants.apply_assistant: the run's keys win, tags add up)."""
    configurable = request.config.get("configurable") or {}
    context = request.context
    if context is None and configurable:
        # The reference mirrors configurable into the context when no context is given
        # (LangGraph 0.6 graphs read it there); the worker narrows it to the context schema.
        context = dict(configurable)
    limit = request.config.get("recursion_limit") or 0
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= INT_MAX:
        raise HTTPError(422, f"'config.recursion_limit' must be a positive integer (at most {INT_MAX})")
    options = run_pb2.RunOptions(
        stream_modes=request.worker_modes,
        stream_subgraphs=request.stream_subgraphs,
        interrupt_before=request.interrupt_before,
        interrupt_after=request.interrupt_after,
        checkpoint_id=request.checkpoint_id,
        recursion_limit=limit,
        tags=_tags(request.config),
        after_seconds=request.after_seconds,
    )
    if configurable:
        options.configurable.CopyFrom(to_struct(configurable, "config.configurable"))
    if context is not None:
        options.context.CopyFrom(to_struct(context, "context"))
    if request.command is not None:
        if request.command.update is not None:
            options.command_update.CopyFrom(to_value(request.command.update, "command.update"))
        options.command_goto.extend(request.command.goto)
    return apply_assistant(_synced(assistant), options)


def _tags(config: dict) -> list[str]:
    tags = config.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise HTTPError(422, "'config.tags' must be an array of strings")
    return tags


def create_run_request(request: RunRequest, assistant: assistant_service_pb2.Assistant, thread_id: str, *,
                       continue_thread: bool = False) -> pb.CreateRunRequest:
    """graphmesh's CreateRunRequest for a LangGraph run request on `thread_id`.
    continue_thread: no input even if one was given (a static interrupt being continued)."""
    options = run_options(request, assistant)
    out = pb.CreateRunRequest(
        graph=assistant.graph,
        thread_id=thread_id,
        metadata={**request.metadata, ASSISTANT_KEY: assistant.assistant_id},
        multitask_strategy=MULTITASK[request.multitask_strategy],
        options=options,
    )
    has_command = request.command is not None and (request.command.update is not None or request.command.goto)
    if request.input is not None and not continue_thread and not has_command:
        # LangGraph's server ignores the input of a run that carries a command.
        out.input.CopyFrom(to_struct(request.input, "input"))
    if request.webhook:
        out.webhook.CopyFrom(run_pb2.Webhook(url=request.webhook))
    return out


__all__ = ["CLIENT_MODES", "Command", "RunRequest", "create_run_request", "parse_run_request", "run_options"]
