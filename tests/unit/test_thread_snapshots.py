"""Thread snapshots as graphmesh.v1 ThreadSnapshot (graphmesh/thread_state.py), JSON
containment as the thread search uses it, and DescribeGraph's subgraphs, on small local
graphs with LangGraph's in-memory saver (no mesh)."""

from __future__ import annotations

import asyncio
import operator
from types import SimpleNamespace
from typing import Annotated

from google.protobuf import json_format
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict

from graphmesh.thread_state import _snapshot_from_tuple, json_contains, snapshot_to_proto
from services.api.graphs import _describe


class Chat(TypedDict, total=False):
    messages: Annotated[list, add_messages]
    log: Annotated[list, operator.add]


def _answer(state: Chat) -> dict:
    return {"messages": [AIMessage(content="hello", id="ai-1")], "log": ["answer"]}


def _ask(state: Chat) -> dict:
    decision = interrupt({"question": "send it?"})
    return {"log": [f"asked:{decision}"]}


def _inner(state: Chat) -> dict:
    return {"log": [f"inner:{interrupt('inner?')}"]}


def _subgraph():
    sub = StateGraph(Chat)
    sub.add_node("inner", _inner)
    sub.add_edge(START, "inner")
    return sub.compile()


def _graph(with_subgraph: bool = False):
    builder = StateGraph(Chat)
    builder.add_node("answer", _answer)
    builder.add_node("ask", _subgraph() if with_subgraph else _ask)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "ask")
    return builder.compile(checkpointer=InMemorySaver())


def _run(graph, thread: str):
    config = {"configurable": {"thread_id": thread}}

    async def go():
        await graph.ainvoke({"messages": [HumanMessage(content="hi", id="h-1")]}, config)
        return await graph.aget_state(config)

    return asyncio.run(go())


def test_a_waiting_snapshot_with_messages_interrupts_and_its_approval():
    graph = _graph()
    snapshot = _run(graph, "t1")
    [pending] = snapshot.interrupts
    approval = SimpleNamespace(interrupt_id=pending.id, approval_id="approval-1", run_id="run-1")
    proto = snapshot_to_proto(snapshot, [approval])
    values = json_format.MessageToDict(proto.values)
    # LangChain messages become their dicts (what LangGraph's HTTP API shows).
    assert [(m["type"], m["content"], m["id"]) for m in values["messages"]] == [("human", "hi", "h-1"),
                                                                                ("ai", "hello", "ai-1")]
    assert values["log"] == ["answer"] and list(proto.next) == ["ask"]
    assert proto.checkpoint_id == snapshot.config["configurable"]["checkpoint_id"]
    assert proto.parent_checkpoint_id == snapshot.parent_config["configurable"]["checkpoint_id"]
    assert proto.created_at.ToDatetime().isoformat()[:19] == snapshot.created_at[:19]
    assert json_format.MessageToDict(proto.metadata)["step"] == snapshot.metadata["step"]
    [task] = proto.tasks
    assert (task.name, task.error, task.checkpoint_ns) == ("ask", "", "")
    [on_task] = task.interrupts
    assert (on_task.interrupt_id, on_task.node, on_task.approval_id, on_task.run_id) == (
        pending.id, "ask", "approval-1", "run-1")
    assert json_format.MessageToDict(on_task.value) == {"question": "send it?"}
    assert proto.interrupts[0] == on_task
    # Without approvals (an interrupt no run turned into one): no approval named.
    assert snapshot_to_proto(snapshot).interrupts[0].approval_id == ""


def test_a_subgraph_task_names_its_namespace_and_a_failed_task_its_error():
    snapshot = _run(_graph(with_subgraph=True), "t2")
    [task] = snapshot_to_proto(snapshot).tasks
    assert task.name == "ask" and task.checkpoint_ns.startswith("ask:")

    builder = StateGraph(Chat)

    def boom(state: Chat) -> dict:
        raise ValueError("no luck")

    builder.add_node("boom", boom)
    builder.add_edge(START, "boom")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t3"}}

    async def go():
        try:
            await graph.ainvoke({"log": []}, config)
        except ValueError:
            pass
        return await graph.aget_state(config)

    [failed] = snapshot_to_proto(asyncio.run(go())).tasks
    # As LangGraph keeps it in the checkpoint's writes (the exception's repr).
    assert failed.name == "boom" and "ValueError" in failed.error and "no luck" in failed.error


def test_no_checkpoint_is_an_empty_snapshot():
    empty = snapshot_to_proto(None)
    assert not empty.checkpoint_id and not empty.next and not empty.values.fields


def test_a_snapshot_from_the_checkpoint_alone():
    """For a version whose code is gone: the checkpoint's public values and the nodes its
    trigger channels still wait on."""
    graph = _graph()
    snapshot = _run(graph, "t4")
    found = asyncio.run(graph.checkpointer.aget_tuple({"configurable": {"thread_id": "t4"}}))
    alone = _snapshot_from_tuple(found)
    assert list(alone.next) == list(snapshot.next) == ["ask"]
    assert alone.values["log"] == ["answer"] and len(alone.values["messages"]) == 2
    proto = snapshot_to_proto(alone)
    assert proto.checkpoint_id == snapshot.config["configurable"]["checkpoint_id"] and proto.created_at.seconds


def test_json_containment_as_postgres_has_it():
    doc = {"a": 1, "tags": ["x", "y"], "nested": {"b": True, "c": [{"d": 1, "e": 2}]}}
    assert json_contains(doc, {})
    assert json_contains(doc, {"a": 1.0})  # Struct numbers are doubles
    assert json_contains(doc, {"tags": ["y"]}) and json_contains(doc, {"tags": []})
    assert json_contains(doc, {"nested": {"c": [{"d": 1}]}})
    assert not json_contains(doc, {"a": 2}) and not json_contains(doc, {"missing": None})
    assert not json_contains(doc, {"tags": "x"}) and not json_contains(doc, {"tags": ["z"]})
    assert not json_contains(doc, {"nested": {"b": 1}})  # true is not 1
    assert not json_contains({"a": 1}, {"a": True})


def test_describe_lists_subgraphs_with_their_schemas_and_draws_them_with_xray():
    graph = _graph(with_subgraph=True)
    drawable, schemas, subgraphs = _describe(graph, False, None, False)
    assert {n["id"] for n in drawable["nodes"]} == {"__start__", "answer", "ask", "__end__"}
    assert set(subgraphs) == {"ask"}
    assert "log" in json_format.MessageToDict(subgraphs["ask"].state_schema)["properties"]
    assert "messages" in json_format.MessageToDict(schemas.input_schema)["properties"]
    xray, _, _ = _describe(graph, True, None, False)
    assert "ask:inner" in {n["id"] for n in xray["nodes"]}
    assert _describe(graph, False, "nothing-here", True)[2] == {}
