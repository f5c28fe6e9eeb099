"""LangGraph's RemoteGraph against graphmesh's gateway: invoke, stream (single and several
modes, messages as token chunks), get_state / update_state, an interrupt surfacing as
GraphInterrupt (called as a subgraph, also inside a local graph) and resumed with
Command(resume=...) through the review tier."""

from __future__ import annotations

import asyncio
import uuid
from typing import Iterator

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, StateGraph
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from graphmesh.mesh import Mesh
from helpers import private_mesh

RESEARCH = "research_assistant"


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with private_mesh("remote-graph", workers=1, gateway_port=0) as m:
        yield m


@pytest.fixture(scope="module")
def url(mesh) -> str:
    return mesh.gateway_url


def thread() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def said(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def test_invoke_and_stream(url):
    chat = RemoteGraph("chat", url=url)
    out = chat.invoke(said("hi remote"))
    assert out["messages"][-1]["content"] == "You said: hi remote"

    config = thread()
    values = list(chat.stream(said("one"), config, stream_mode="values"))
    assert values[-1]["messages"][-1]["content"] == "You said: one"
    parts = list(chat.stream(said("two words"), config, stream_mode=["updates", "messages", "custom"]))
    modes = [p.event for p in parts]
    assert {"updates", "messages", "custom"} <= set(modes) and "metadata" not in modes
    tokens = [p.data for p in parts if p.event == "messages"]
    assert all(isinstance(t, tuple) and len(t) == 2 for t in tokens)  # (message chunk, metadata), as local
    reply = [p.data for p in parts if p.event == "updates"][-1]["chat"]["messages"][-1]["content"]
    assert "".join(t[0]["content"] for t in tokens) == reply == "You said: two words"
    assert [p.data for p in parts if p.event == "custom"] == [{"status": "replying", "words": 4}]

    async def astream() -> list:
        return [c async for c in chat.astream(said("async"), thread(), stream_mode="updates")]
    assert [list(c) for c in asyncio.run(astream())] == [["chat"]]


def test_get_state_and_update_state(url):
    chat = RemoteGraph("chat", url=url)
    config = thread()
    chat.invoke(said("remember me"), config)
    state = chat.get_state(config)
    assert state.next == () and [m["type"] for m in state.values["messages"]] == ["human", "ai"]
    assert state.config["configurable"]["thread_id"] == config["configurable"]["thread_id"]

    updated = chat.update_state(config, {"messages": [{"type": "human", "content": "written by hand"}]})
    assert updated["configurable"]["checkpoint_id"] != state.config["configurable"]["checkpoint_id"]
    after = chat.get_state(config)
    assert after.values["messages"][-1]["content"] == "written by hand" and len(after.values["messages"]) == 3
    history = list(chat.get_state_history(config))
    assert history[0].config["configurable"]["checkpoint_id"] == updated["configurable"]["checkpoint_id"]


def test_interrupt_is_a_graph_interrupt_and_resumes(url):
    research = RemoteGraph(RESEARCH, url=url)
    question = {"question": "what is grpc?", "delay_seconds": 0, "review": True}

    # At the top level the interrupt comes back in the output, as LangGraph's own invoke.
    config = thread()
    out = research.invoke(question, config)
    assert out["__interrupt__"][0]["value"]["node"] == "write_report"
    assert research.get_state(config).next == ("write_report",)
    done = research.invoke(Command(resume={"decision": "approve"}), config)
    assert done["report"].startswith("# what is grpc?") and "__interrupt__" not in done

    # Called as a subgraph (a caller's namespace), it raises GraphInterrupt.
    nested = thread()
    nested["configurable"]["checkpoint_ns"] = "outer:1"
    with pytest.raises(GraphInterrupt) as caught:
        research.invoke(question, nested)
    assert caught.value.args[0][0].value["node"] == "write_report"


class Outer(TypedDict, total=False):
    question: str
    delay_seconds: float
    review: bool
    report: str


def test_as_a_node_of_a_local_graph(url):
    research = RemoteGraph(RESEARCH, url=url)
    builder = StateGraph(Outer)
    builder.add_node("research", research)
    builder.add_edge(START, "research")
    builder.add_edge("research", END)
    app = builder.compile(checkpointer=InMemorySaver())
    config = thread()
    out = app.invoke({"question": "what is langgraph?", "delay_seconds": 0, "review": True}, config)
    interrupt = out["__interrupt__"][0]
    assert interrupt.value["node"] == "write_report"
    assert app.get_state(config).next == ("research",)
    # The remote thread is the caller's thread id: resuming it there finishes the remote run
    # (RemoteGraph passes no resume value through a parent, so the parent re-running its node
    # would start the remote graph again).
    done = research.invoke(Command(resume={"decision": "approve"}), config)
    assert done["report"].startswith("# what is langgraph?")
