"""A run's LangGraph options (RunOptions): checked when the run is created, kept on its record
(gm_runs.options, the proto as JSON with its field names), applied to every execution of
the run, the first and any after a crash or a hand-back (docs/run-options.md).

What each option becomes:

    stream_modes, stream_subgraphs  astream(stream_mode=[...], subgraphs=...); each chunk of a
                                    requested mode is published as RunEvent.stream_chunk
    configurable                    merged into config["configurable"] (thread_id and LangGraph's
                                    checkpoint keys are graphmesh's: a client's are dropped)
    context                         astream(context=...), narrowed to the graph's context schema
    interrupt_before/after          astream(interrupt_before=..., interrupt_after=...)
    checkpoint_id                   the first execution starts from that checkpoint (a branch)
    command_update/command_goto     the input becomes Command(update=..., goto=...)
    recursion_limit                 config["recursion_limit"], never above the manifest's max_steps
    tags                            config["tags"]
    after_seconds                   the run's run_after (gm_runs.run_after): no claim before it, its
                                    job published when it is due (graphmesh/reconcile.py)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from google.protobuf import json_format
from langgraph.types import Command

from graphmesh.errors import InvalidArgument
from graphmesh.jsonvalues import whole_numbers
from graphmesh.v1 import run_pb2

__all__ = ["RunOptions", "STREAM_MODES", "INTERNAL_MODES", "ALL_NODES", "MAX_AFTER_SECONDS", "parse_options",
           "stopped_at"]

# LangGraph's stream modes a run may carry as stream chunks.
STREAM_MODES = ("values", "updates", "messages", "custom", "debug", "tasks", "checkpoints")
# What the LangGraph HTTP API calls a mode -> LangGraph's own name.
MODE_ALIASES = {"messages-tuple": "messages"}
# The modes graphmesh always streams for its own events (node_started/finished, custom).
INTERNAL_MODES = ("tasks", "custom")
# The longest a run may be delayed (after_seconds): a week; longer waits are schedules.
MAX_AFTER_SECONDS = 7 * 24 * 3600
# Static interrupts at every node.
ALL_NODES = "*"
# config["configurable"] keys a client cannot set: the thread is the run's, and where it
# starts is options.checkpoint_id's to say (LangGraph's "__pregel_*" keys are internal too).
RESERVED_CONFIGURABLE = frozenset({"thread_id", "checkpoint_id", "checkpoint_ns", "checkpoint_map"})


@dataclass(frozen=True)
class RunOptions:
    stream_modes: tuple[str, ...] = ()
    stream_subgraphs: bool = False
    configurable: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] | None = None
    interrupt_before: tuple[str, ...] = ()
    interrupt_after: tuple[str, ...] = ()
    checkpoint_id: str = ""
    command_update: Any = None
    command_goto: tuple[str, ...] = ()
    recursion_limit: int = 0
    tags: tuple[str, ...] = ()
    after_seconds: int = 0

    # -- records ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RunOptions":
        """The options as the run record keeps them (None: none). Numbers that a protobuf
        Struct carried as doubles come back as ints when they are whole."""
        if not data:
            return EMPTY
        return cls(
            stream_modes=tuple(data.get("stream_modes") or ()),
            stream_subgraphs=bool(data.get("stream_subgraphs")),
            configurable={k: whole_numbers(v) for k, v in (data.get("configurable") or {}).items()
                          if k not in RESERVED_CONFIGURABLE and not k.startswith("__")},
            context=whole_numbers(data["context"]) if data.get("context") is not None else None,
            interrupt_before=tuple(data.get("interrupt_before") or ()),
            interrupt_after=tuple(data.get("interrupt_after") or ()),
            checkpoint_id=data.get("checkpoint_id") or "",
            command_update=whole_numbers(data.get("command_update")),
            command_goto=tuple(data.get("command_goto") or ()),
            recursion_limit=int(data.get("recursion_limit") or 0),
            tags=tuple(data.get("tags") or ()),
            after_seconds=int(data.get("after_seconds") or 0),
        )

    @classmethod
    def from_proto(cls, message: run_pb2.RunOptions | None) -> "RunOptions":
        if message is None:
            return EMPTY
        return cls.from_json(json_format.MessageToDict(message, preserving_proto_field_name=True))

    def to_json(self) -> dict[str, Any] | None:
        """As the run record keeps them: the proto's field names, defaults left out; None
        when every option is at its default."""
        out: dict[str, Any] = {}
        for name, value in (("stream_modes", list(self.stream_modes)), ("stream_subgraphs", self.stream_subgraphs),
                            ("configurable", self.configurable), ("context", self.context),
                            ("interrupt_before", list(self.interrupt_before)),
                            ("interrupt_after", list(self.interrupt_after)), ("checkpoint_id", self.checkpoint_id),
                            ("command_update", self.command_update), ("command_goto", list(self.command_goto)),
                            ("recursion_limit", self.recursion_limit), ("tags", list(self.tags)),
                            ("after_seconds", self.after_seconds)):
            if value or (name == "context" and value is not None):
                out[name] = value
        return out or None

    def to_proto(self) -> run_pb2.RunOptions:
        return json_format.ParseDict(self.to_json() or {}, run_pb2.RunOptions())

    # -- execution -------------------------------------------------------------------------
    @property
    def has_command(self) -> bool:
        return self.command_update is not None or bool(self.command_goto)

    def graph_input(self, run_input: Any) -> Any:
        """What the first execution streams: Command(update, goto) in place of the input
        (LangGraph's server ignores a run's input when it carries a command), else the input
        (None continues the thread from its checkpoint)."""
        if not self.has_command:
            return run_input
        goto: Any = list(self.command_goto) if len(self.command_goto) != 1 else self.command_goto[0]
        return Command(update=self.command_update, goto=goto or ())

    def apply_config(self, config: dict[str, Any], max_steps: int) -> None:
        """Merges configurable, tags and the recursion limit into a run's config (in place);
        the config's own configurable keys (the thread) win."""
        if self.configurable:
            config["configurable"] = {**self.configurable, **config["configurable"]}
        if self.tags:
            config["tags"] = list(self.tags)
        config["recursion_limit"] = self.step_limit(max_steps)

    def step_limit(self, max_steps: int) -> int:
        return min(self.recursion_limit, max_steps) if self.recursion_limit else max_steps

    def stream_kwargs(self, graph: Any) -> dict[str, Any]:
        """astream's keyword arguments for the static interrupts and the runtime context."""
        kwargs: dict[str, Any] = {}
        if self.interrupt_before:
            kwargs["interrupt_before"] = _nodes_arg(self.interrupt_before)
        if self.interrupt_after:
            kwargs["interrupt_after"] = _nodes_arg(self.interrupt_after)
        if self.context is not None:
            kwargs["context"] = _narrow_context(graph, self.context)
        return kwargs


EMPTY = RunOptions()


def parse_options(message: run_pb2.RunOptions | None, *, nodes: Callable[[], Iterable[str]],
                  max_steps: int, max_bytes: int = 0) -> RunOptions:
    """A CreateRun's options, checked (InvalidArgument with a code otherwise). `nodes`: the
    routed graph version's node names, asked for only when an option names nodes.
    `max_bytes`: the most the options may take as JSON (the graph's max_input_bytes: a
    command's update and the context are input by another name); 0: no limit."""
    options = RunOptions.from_proto(message)
    if options is EMPTY:
        return options
    if max_bytes and (size := len(json.dumps(options.to_json(), separators=(",", ":")).encode())) > max_bytes:
        raise InvalidArgument(f"options are {size} bytes as JSON, over this graph version's limit "
                              f"max_input_bytes={max_bytes}", code="OPTIONS_TOO_LARGE")
    modes = []
    for mode in options.stream_modes:
        name = MODE_ALIASES.get(mode, mode)
        if name not in STREAM_MODES:
            raise InvalidArgument(f"unknown stream mode {mode!r} (known: {', '.join(STREAM_MODES)}, messages-tuple)",
                                  code="UNKNOWN_STREAM_MODE")
        if name not in modes:
            modes.append(name)
    if options.after_seconds > MAX_AFTER_SECONDS:
        raise InvalidArgument(f"after_seconds {options.after_seconds} is over the limit of {MAX_AFTER_SECONDS} "
                              "(a week): for a later start, create a schedule", code="AFTER_SECONDS_TOO_LONG")
    if options.recursion_limit > max_steps:
        raise InvalidArgument(f"recursion_limit {options.recursion_limit} is over this graph version's max_steps "
                              f"{max_steps}", code="RECURSION_LIMIT_TOO_HIGH")
    if options.interrupt_before or options.interrupt_after or options.command_goto:
        known = [n for n in nodes() if not n.startswith("__")]
        for name, asked, star in (("interrupt_before", options.interrupt_before, True),
                                  ("interrupt_after", options.interrupt_after, True),
                                  ("command_goto", options.command_goto, False)):
            unknown = [n for n in asked if n not in known and not (star and n == ALL_NODES)]
            if unknown:
                raise InvalidArgument(
                    f"{name} names unknown node(s) {', '.join(map(repr, unknown))} (nodes: {', '.join(known)}"
                    f"{', or * for all' if star else ''})", code="UNKNOWN_NODE")
    if options.checkpoint_id and not _is_uuid_like(options.checkpoint_id):
        raise InvalidArgument(f"checkpoint_id {options.checkpoint_id[:64]!r} is not a checkpoint id",
                              code="INVALID_CHECKPOINT_ID")
    return RunOptions(**{**options.__dict__, "stream_modes": tuple(modes),
                         "interrupt_before": _star(options.interrupt_before),
                         "interrupt_after": _star(options.interrupt_after)})


def stopped_at(nodes: tuple[str, ...], next_nodes: Iterable[str]) -> bool:
    """Whether a static interrupt on `nodes` stops a graph about to run `next_nodes`."""
    upcoming = list(next_nodes)
    return bool(upcoming) and (nodes == (ALL_NODES,) or any(n in nodes for n in upcoming))


def _star(nodes: tuple[str, ...]) -> tuple[str, ...]:
    return (ALL_NODES,) if ALL_NODES in nodes else nodes


def _nodes_arg(nodes: tuple[str, ...]) -> Any:
    return ALL_NODES if nodes == (ALL_NODES,) else list(nodes)


def _narrow_context(graph: Any, context: dict[str, Any]) -> dict[str, Any]:
    """The context keys the graph's context schema declares (as LangGraph's server filters
    them: a dataclass schema would refuse the others); all of them without a schema."""
    if getattr(graph, "context_schema", None) is None:
        return context
    try:
        properties = graph.get_context_jsonschema().get("properties") or {}
    except Exception:  # a schema pydantic cannot describe: LangGraph coerces it as it can
        return context
    return {k: v for k, v in context.items() if k in properties} if properties else context


def _is_uuid_like(text: str) -> bool:
    return len(text) <= 64 and all(c in "0123456789abcdefABCDEF-" for c in text) and len(text) >= 8
