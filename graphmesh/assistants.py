"""Assistants, the parts every process shares: the system assistant's id for a graph, the
check of an assistant's config, and how an assistant's config and context combine with a
run's own options (pure functions: the gateway imports them; it reaches assistants
themselves only through AssistantService).

A run of an assistant gets, as LangGraph's server merges them: the assistant's configurable
keys overridden by the run's, the assistant's context keys overridden by the run's, the
assistant's tags followed by the run's, and the run's recursion limit, else the assistant's.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable

from google.protobuf import json_format

from graphmesh.errors import InvalidArgument
from graphmesh.v1 import assistant_service_pb2, run_pb2

__all__ = ["NAMESPACE_GRAPH", "SYSTEM_METADATA", "apply_assistant", "check_config", "merge_run_config",
           "parse_assistant_id", "system_assistant_id", "system_assistants"]

# LangGraph's server names a graph's assistant uuid5(NAMESPACE_GRAPH, graph name): the same
# ids here, so clients that computed or stored one keep working.
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
SYSTEM_METADATA = {"created_by": "system"}
# The parts of a RunnableConfig an assistant may hold, and what each must be.
CONFIG_TYPES = {"configurable": dict, "tags": list, "recursion_limit": int}


def system_assistant_id(graph: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph))


def system_assistants(graphs: Iterable[str]) -> list[dict[str, Any]]:
    """The system assistant of each graph, as AssistantStore.insert_system takes them."""
    return [{"assistant_id": system_assistant_id(g), "graph": g, "name": g, "metadata": dict(SYSTEM_METADATA)}
            for g in graphs]


def parse_assistant_id(text: str) -> str | None:
    """The canonical form of an assistant id; None when `text` is not a UUID (a graph name)."""
    try:
        return str(uuid.UUID(text))
    except (ValueError, AttributeError, TypeError):
        return None


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """An assistant's config as LangGraph's Config schema allows it: `configurable` an
    object, `tags` strings, `recursion_limit` a positive integer (other keys pass through)."""
    out = dict(config)
    for key, kind in CONFIG_TYPES.items():
        if key not in out or out[key] is None:
            continue
        value = out[key]
        if kind is int and isinstance(value, float) and value.is_integer():
            value = out[key] = int(value)  # protobuf Struct carries every number as a double
        if not isinstance(value, kind) or isinstance(value, bool) or \
                (kind is list and not all(isinstance(t, str) for t in value)) or (kind is int and value < 1):
            want = {"configurable": "an object", "tags": "a list of strings",
                    "recursion_limit": "a positive integer"}[key]
            raise InvalidArgument(f"config.{key} must be {want}", code="INVALID_ASSISTANT_CONFIG")
    return out


def merge_run_config(assistant_config: dict[str, Any], assistant_context: dict[str, Any],
                     config: dict[str, Any] | None = None,
                     context: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, context) of a run of the assistant whose own `config` and `context` the
    client sent: the run's keys win, configurable and context merge key by key, tags add up."""
    config, context = dict(config or {}), dict(context or {})
    merged = {**assistant_config, **config}
    merged["configurable"] = {**(assistant_config.get("configurable") or {}), **(config.get("configurable") or {})}
    tags = list(dict.fromkeys([*(assistant_config.get("tags") or []), *(config.get("tags") or [])]))
    if tags:
        merged["tags"] = tags
    if not config.get("recursion_limit") and assistant_config.get("recursion_limit"):
        merged["recursion_limit"] = assistant_config["recursion_limit"]
    return merged, {**assistant_context, **context}


def apply_assistant(assistant: assistant_service_pb2.Assistant, options: run_pb2.RunOptions) -> run_pb2.RunOptions:
    """The RunOptions of a run of `assistant` whose client asked for `options` (a new
    message; neither argument changes)."""
    a_config = json_format.MessageToDict(assistant.config) if assistant.HasField("config") else {}
    a_context = json_format.MessageToDict(assistant.context) if assistant.HasField("context") else {}
    own: dict[str, Any] = {"tags": list(options.tags)}
    if options.HasField("configurable"):
        own["configurable"] = json_format.MessageToDict(options.configurable)
    if options.recursion_limit:
        own["recursion_limit"] = options.recursion_limit
    context = json_format.MessageToDict(options.context) if options.HasField("context") else {}
    config, context = merge_run_config(a_config, a_context, own, context)
    out = run_pb2.RunOptions()
    out.CopyFrom(options)
    out.configurable.Clear()
    if config["configurable"]:
        out.configurable.update(config["configurable"])
    elif not options.HasField("configurable"):
        out.ClearField("configurable")
    out.context.Clear()
    if context:
        out.context.update(context)
    elif not options.HasField("context"):
        out.ClearField("context")
    del out.tags[:]
    out.tags.extend(config.get("tags") or [])
    limit = config.get("recursion_limit") or 0
    out.recursion_limit = int(limit) if isinstance(limit, (int, float)) and limit > 0 else 0
    return out
