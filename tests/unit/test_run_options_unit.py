"""RunOptions: parsing and checking a CreateRun's LangGraph options, what they do to a run's
config and stream, and how the executor publishes stream chunks (root and subgraphs)."""

from __future__ import annotations

import asyncio
import operator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Annotated

import pytest
from google.protobuf import json_format
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from graphmesh.errors import InvalidArgument
from graphmesh.execution.executor import RunExecutor
from graphmesh.execution.run_options import EMPTY, MAX_AFTER_SECONDS, RunOptions, parse_options, stopped_at
from graphmesh.store.records import RunRecord
from graphmesh.store.runs import fingerprint_differences, request_fingerprint
from graphmesh.store.statuses import RunStatus
from graphmesh.v1 import run_pb2

NODES = ["plan", "search", "write"]


def _parse(max_steps: int = 25, **fields) -> RunOptions:
    message = json_format.ParseDict(fields, run_pb2.RunOptions())
    return parse_options(message, nodes=lambda: NODES, max_steps=max_steps)


def _code(**fields) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as err:
        _parse(**fields)
    return err.value.code, err.value.message


def test_no_options_are_the_empty_options_and_store_as_null():
    assert parse_options(None, nodes=lambda: pytest.fail("nodes asked for"), max_steps=25) is EMPTY
    assert parse_options(run_pb2.RunOptions(), nodes=lambda: NODES, max_steps=25) is EMPTY
    assert EMPTY.to_json() is None and RunOptions.from_json(None) is EMPTY


def test_stream_modes_are_checked_deduplicated_and_messages_tuple_is_messages():
    options = _parse(stream_modes=["values", "messages-tuple", "messages", "custom", "values"])
    assert options.stream_modes == ("values", "messages", "custom")
    assert options.to_json() == {"stream_modes": ["values", "messages", "custom"]}
    code, message = _code(stream_modes=["values", "events"])
    assert code == "UNKNOWN_STREAM_MODE" and "'events'" in message and "checkpoints" in message


@pytest.mark.parametrize("field", ["interrupt_before", "interrupt_after", "command_goto"])
def test_node_names_must_exist(field):
    assert getattr(_parse(**{field: ["search"]}), field) == ("search",)
    code, message = _code(**{field: ["search", "serach"]})
    assert code == "UNKNOWN_NODE" and field in message and "'serach'" in message and "plan, search, write" in message


def test_a_star_interrupts_every_node_but_is_no_goto_target():
    options = _parse(interrupt_before=["plan", "*"], interrupt_after=["*"])
    assert options.interrupt_before == ("*",) and options.interrupt_after == ("*",)
    assert options.stream_kwargs(None) == {"interrupt_before": "*", "interrupt_after": "*"}
    assert _code(command_goto=["*"])[0] == "UNKNOWN_NODE"


def test_recursion_limit_may_lower_the_manifests_steps_never_raise_them():
    config = {"configurable": {"thread_id": "t"}}
    _parse(max_steps=25, recursion_limit=10).apply_config(config, 25)
    assert config["recursion_limit"] == 10
    assert _parse(max_steps=25, recursion_limit=25).step_limit(25) == 25
    code, message = _code(max_steps=25, recursion_limit=26)
    assert code == "RECURSION_LIMIT_TOO_HIGH" and "26" in message and "25" in message
    assert EMPTY.step_limit(25) == 25


def test_options_are_held_to_the_input_size_limit():
    message = json_format.ParseDict({"command_update": {"text": "x" * 200}}, run_pb2.RunOptions())
    assert parse_options(message, nodes=lambda: NODES, max_steps=25, max_bytes=300).command_update
    with pytest.raises(InvalidArgument) as err:
        parse_options(message, nodes=lambda: NODES, max_steps=25, max_bytes=100)
    assert err.value.code == "OPTIONS_TOO_LARGE" and "max_input_bytes=100" in err.value.message


def test_checkpoint_id_must_look_like_one():
    assert _parse(checkpoint_id="1f1f288c-4862-6711-bfff-c5e3e7dea0e9").checkpoint_id
    assert _code(checkpoint_id="latest; drop table")[0] == "INVALID_CHECKPOINT_ID"


def test_configurable_merges_under_the_runs_own_keys_and_numbers_come_back_whole():
    options = _parse(configurable={"model": "m", "temperature": 0.5, "max_tokens": 100, "thread_id": "other",
                                   "checkpoint_id": "x", "checkpoint_ns": "y", "__pregel_resuming": True},
                     tags=["ui"], context={"user_name": "Ann", "n": 3})
    assert options.configurable == {"model": "m", "temperature": 0.5, "max_tokens": 100}
    assert isinstance(options.configurable["max_tokens"], int) and options.context == {"user_name": "Ann", "n": 3}
    config = {"configurable": {"thread_id": "mine"}, "recursion_limit": 25}
    options.apply_config(config, 25)
    assert config == {"configurable": {"model": "m", "temperature": 0.5, "max_tokens": 100, "thread_id": "mine"},
                      "tags": ["ui"], "recursion_limit": 25}


def test_options_round_trip_through_the_record_and_the_proto():
    options = _parse(stream_modes=["updates"], stream_subgraphs=True, configurable={"a": 1}, context={},
                     interrupt_after=["write"], command_update={"k": [1, "x"]}, command_goto=["plan"], tags=["t"])
    stored = options.to_json()
    assert RunOptions.from_json(stored) == options
    assert stored["context"] == {}  # an empty context was asked for: it is kept
    assert RunOptions.from_proto(options.to_proto()) == options


def test_after_seconds_is_bounded_and_kept_on_the_record():
    options = _parse(after_seconds=MAX_AFTER_SECONDS)
    assert options.to_json() == {"after_seconds": MAX_AFTER_SECONDS}
    assert RunOptions.from_proto(options.to_proto()) == options
    code, message = _code(after_seconds=MAX_AFTER_SECONDS + 1)
    assert code == "AFTER_SECONDS_TOO_LONG" and "schedule" in message


def test_a_delayed_run_is_not_due_before_its_time():
    created = datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc)
    run = RunRecord(run_id="r", thread_id="t", graph="g", versions={}, status=RunStatus.QUEUED, attempt=1,
                    error=None, previous_errors=[], owner="o", idempotency_key="", metadata={}, input=None,
                    multitask_strategy="reject", sync=False, created_at=created, started_at=None,
                    updated_at=created, finished_at=None, run_after=created + timedelta(seconds=30))
    assert run.not_due(created + timedelta(seconds=29))
    assert not run.not_due(created + timedelta(seconds=30))
    assert not replace(run, run_after=None).not_due(created)


def test_a_command_replaces_the_input():
    assert EMPTY.graph_input({"x": 1}) == {"x": 1} and EMPTY.graph_input(None) is None
    one = _parse(command_goto=["plan"], command_update={"k": 2}).graph_input({"ignored": True})
    assert isinstance(one, Command) and one.goto == "plan" and one.update == {"k": 2}
    two = _parse(command_goto=["plan", "write"]).graph_input(None)
    assert two.goto == ["plan", "write"] and two.update is None
    assert _parse(command_update={"k": None}).has_command


def test_stopped_at_a_static_interrupt():
    assert stopped_at(("search",), ["search"]) and stopped_at(("*",), ["plan"])
    assert not stopped_at(("search",), ["plan"]) and not stopped_at(("*",), [])


def test_options_are_part_of_the_idempotency_fingerprint():
    base = dict(graph="g", graph_version="", thread_id="t", graph_input={"a": 1})
    plain = request_fingerprint(**base)
    streaming = request_fingerprint(**base, options={"stream_modes": ["values"]})
    assert fingerprint_differences(plain, streaming) == ["options"]
    assert fingerprint_differences(request_fingerprint(**{**base, "graph_input": None}), plain) == ["input"]
    recorded_before_options = {k: v for k, v in plain.items() if k != "options"}
    assert fingerprint_differences(recorded_before_options, streaming) == []


# -- the executor's stream ------------------------------------------------------------------


class Inner(TypedDict, total=False):
    items: Annotated[list[str], operator.add]


def _inner_step(state: Inner) -> dict:
    get_stream_writer()({"from": "inner"})
    return {"items": ["inner"]}


def _outer_step(state: Inner) -> dict:
    get_stream_writer()({"from": "outer"})
    return {"items": ["outer"]}


def _graph():
    inner = StateGraph(Inner)
    inner.add_node("inner_step", _inner_step)
    inner.add_edge(START, "inner_step")
    inner.add_edge("inner_step", END)
    outer = StateGraph(Inner)
    outer.add_node("outer_step", _outer_step)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "outer_step")
    outer.add_edge("outer_step", "sub")
    outer.add_edge("sub", END)
    return outer.compile(checkpointer=InMemorySaver())


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    async def emit(self, **kind) -> None:
        (name, body), = kind.items()
        self.events.append((name, body))

    async def emit_chunk(self, mode, namespace, chunk) -> None:
        self.events.append(("stream_chunk", (mode, tuple(namespace), chunk)))


def _stream(options: RunOptions, graph_input=None, thread: str = "t1"):
    graph = _graph()
    sink = RecordingSink()
    config = {"configurable": {"thread_id": thread}, "metadata": {"gm_run_id": "r"}}
    interrupts = asyncio.run(RunExecutor._stream(object.__new__(RunExecutor), graph, graph_input or {"items": []},
                                                 config, sink, None, "sync", options))
    return sink.events, interrupts


def test_without_stream_modes_only_graphmeshs_own_events_go_out():
    events, interrupts = _stream(EMPTY)
    assert interrupts == []
    assert [name for name, _ in events] == ["node_started", "custom", "node_finished",
                                            "node_started", "node_finished"]


def test_subgraph_chunks_carry_their_namespace_and_own_events_stay_the_roots():
    events, _ = _stream(RunOptions(stream_modes=("custom", "updates"), stream_subgraphs=True))
    own = [(name, getattr(body, "node", "")) for name, body in events if name != "stream_chunk"]
    # node events and custom progress as without options: the root graph's alone
    assert own == [("node_started", "outer_step"), ("custom", "outer_step"), ("node_finished", "outer_step"),
                   ("node_started", "sub"), ("node_finished", "sub")]
    chunks = [body for name, body in events if name == "stream_chunk"]
    assert ("custom", (), {"from": "outer"}) in chunks
    inner_custom = [c for c in chunks if c[0] == "custom" and c[1]]
    assert len(inner_custom) == 1 and inner_custom[0][2] == {"from": "inner"}
    assert len(inner_custom[0][1]) == 1 and inner_custom[0][1][0].startswith("sub:")
    assert ("updates", (), {"outer_step": {"items": ["outer"]}}) in chunks
    assert ("updates", inner_custom[0][1], {"inner_step": {"items": ["inner"]}}) in chunks


def test_without_subgraphs_chunks_come_from_the_root_only():
    events, _ = _stream(RunOptions(stream_modes=("custom",)))
    chunks = [body for name, body in events if name == "stream_chunk"]
    assert chunks == [("custom", (), {"from": "outer"})]


def test_a_static_interrupt_stops_the_stream_with_an_interrupt_update():
    events, interrupts = _stream(RunOptions(stream_modes=("updates",), interrupt_before=("sub",)))
    assert interrupts == []  # not an approval: the run ends COMPLETED, its thread waits before "sub"
    chunks = [body for name, body in events if name == "stream_chunk"]
    assert chunks[-1] == ("updates", (), {"__interrupt__": ()})
    assert [getattr(b, "node", "") for n, b in events if n == "node_started"] == ["outer_step"]


def test_chunk_data_is_json_with_secrets_redacted_and_oversized_data_left_out(monkeypatch):
    from graphmesh.execution import sink as sink_module
    from graphmesh.execution.sink import EventSink

    published = []

    async def emit(self, **kind):
        published.append(kind["stream_chunk"])

    monkeypatch.setattr(EventSink, "emit", emit)
    monkeypatch.setattr(sink_module.secrets, "redact_value",
                        lambda v: {k: "[REDACTED]" if k == "key" else v for k, v in v.items()}
                        if isinstance(v, dict) else v)
    sink = EventSink(None, "r", 1)
    asyncio.run(sink.emit_chunk("values", ["a:1"], {"key": "s3cret", "n": (1, 2)}))
    chunk = published[-1]
    assert chunk.mode == "values" and list(chunk.namespace) == ["a:1"]
    assert json_format.MessageToDict(chunk.data) == {"key": "[REDACTED]", "n": [1, 2]}
    monkeypatch.setattr(sink_module, "MAX_CHUNK_BYTES", 10)
    asyncio.run(sink.emit_chunk("values", [], {"n": "x" * 100}))
    omitted = json_format.MessageToDict(published[-1].data)["__graphmesh_omitted__"]
    assert omitted["limit"] == 10 and omitted["bytes"] > 100


def test_messages_chunks_are_message_metadata_pairs():
    from langchain_core.messages import AIMessageChunk

    from graphmesh.jsonvalues import jsonable

    data = jsonable((AIMessageChunk(content="Hi", id="m1"), {"langgraph_node": "chat"}))
    assert data[0]["type"] == "AIMessageChunk" and data[0]["content"] == "Hi" and data[0]["id"] == "m1"
    assert data[1] == {"langgraph_node": "chat"}


# -- a re-execution after a crash -------------------------------------------------------------


def _resumed_input(options: RunOptions, graph, thread: str):
    """What the executor streams when it executes run "r1" again after a crash."""
    from types import SimpleNamespace

    run = SimpleNamespace(run_id="r1", thread_id=thread, input={"items": []}, resume_with=None)
    claim = SimpleNamespace(run=run, resumed=True)
    config = {"configurable": {"thread_id": thread}}
    return asyncio.run(RunExecutor._input(object.__new__(RunExecutor), graph, config, claim, None, None, options))


def _stopped(options: RunOptions, thread: str):
    graph = _graph()
    config = {"configurable": {"thread_id": thread}, "metadata": {"gm_run_id": "r1"}}
    asyncio.run(RunExecutor._stream(object.__new__(RunExecutor), graph, {"items": []}, config, RecordingSink(),
                                    None, "sync", options))
    return graph


@pytest.mark.parametrize("options", [RunOptions(interrupt_before=("sub",)), RunOptions(interrupt_after=("outer_step",)),
                                     RunOptions(interrupt_before=("*",))], ids=["before", "after", "before-all"])
def test_a_run_that_crashed_at_its_static_interrupt_does_not_run_past_it(options):
    from graphmesh.execution.executor import _ALREADY_STOPPED

    graph = _stopped(options, "crashed")
    assert _resumed_input(options, graph, "crashed") == (_ALREADY_STOPPED, [])
    # without the option the same checkpoint is only a step boundary: the run continues
    assert _resumed_input(EMPTY, graph, "crashed") == (None, [])


def test_a_checkpoint_short_of_the_static_interrupt_continues():
    graph = _stopped(RunOptions(interrupt_before=("sub",)), "short")
    assert _resumed_input(RunOptions(interrupt_after=("sub",)), graph, "short") == (None, [])
