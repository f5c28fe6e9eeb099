"""research_assistant v2 side by side with v1: manifest entry, nodes, and an in-process run."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphmesh.registry import Limits, Registry, RetrySpec

REPO = Path(__file__).resolve().parents[2]
QUESTION = "How do LangGraph checkpoints work with Postgres?"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_file(REPO / "graphmesh" / "examples.yaml")


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def test_default_registry_loads_both_versions(monkeypatch):
    monkeypatch.delenv("GRAPHMESH_CONFIG", raising=False)
    monkeypatch.chdir(REPO)
    specs = Registry.default().versions("research_assistant")
    assert [s.version for s in specs] == ["1", "2"]


def test_v2_manifest_entry(registry):
    v1, v2 = registry.versions("research_assistant")
    assert registry.get("research_assistant").version == "1"  # v2 has weight 0: v1 takes new runs
    assert (v1.weight, v2.weight) == (100, 0)
    assert v2.path == "graphs.research_v2:graph" and not v2.sync_eligible
    assert v2.versions() == {"graph_version": "2", "prompt_version": "research-v2", "model_route": "none",
                             "tool_version": "corpus-1", "state_schema_version": "2"}
    assert v2.limits == v1.limits == Limits(max_steps=25, run_timeout_seconds=300, max_input_bytes=65536,
                                            max_concurrent_runs=0)
    assert set(v2.nodes) == {"retrieve", "write_report"}
    assert v2.nodes["retrieve"].retry == RetrySpec(max_attempts=3, backoff_seconds=0.2)


def test_v2_nodes_and_state(registry):
    assert registry.node_names("research_assistant", "2") == ["plan", "retrieve", "rank", "summarize", "write_report"]
    assert registry.node_names("research_assistant", "1") == ["plan", "search", "rank", "summarize", "write_report"]
    channels = registry.compiled("research_assistant", "2").channels
    assert "documents" in channels and "results" not in channels
    assert "results" in registry.compiled("research_assistant", "1").channels


def test_v2_same_input_schema_as_v1(registry):
    v1, v2 = registry.versions("research_assistant")
    good = {"question": "q", "max_results": 2.0, "delay_seconds": 1, "fail_first_attempts": 0}
    assert registry.validate_input(v2, good) == registry.validate_input(v1, good)


def test_v2_runs_end_to_end(registry):
    graph = registry.compiled("research_assistant", "2", checkpointer=InMemorySaver())
    config = cfg()

    async def run():
        custom, updates = [], []
        async for mode, chunk in graph.astream({"question": QUESTION, "delay_seconds": 0.05}, config,
                                               stream_mode=["custom", "updates"]):
            (custom if mode == "custom" else updates).append(chunk)
        return custom, updates

    custom, updates = asyncio.run(run())
    assert [next(iter(u)) for u in updates] == ["plan", "retrieve", "rank", "summarize", "write_report"]
    stages = [c["stage"] for c in custom]
    assert "retrieve" in stages and "search" not in stages
    progress = [c["progress"] for c in custom]
    assert progress == sorted(progress) and progress[-1] == 1.0

    state = graph.get_state(config).values
    assert {d["id"] for d in state["documents"]} == {"lg-1", "lg-2", "pg-1"}
    assert "results" not in state
    assert state["sources"] == ["lg-1", "pg-1", "lg-2"]  # same output as v1 for the same question
    assert state["report"].startswith(f"# {QUESTION}")
    assert state["summary"]


def test_v2_output_matches_v1(registry):
    inp = {"question": "grpc deadlines and nats", "delay_seconds": 0, "max_results": 2}
    out = {v: asyncio.run(registry.compiled("research_assistant", v, checkpointer=InMemorySaver())
                          .ainvoke(inp, cfg()))
           for v in ("1", "2")}
    keys = ("report", "sources", "summary")
    assert {k: out["1"][k] for k in keys} == {k: out["2"][k] for k in keys}


def test_v2_documents_reducer_appends(registry):
    # v1's `results` was overwritten by each run; v2's `documents` accumulates on the thread.
    graph = registry.compiled("research_assistant", "2", checkpointer=InMemorySaver())
    config = cfg()
    first = asyncio.run(graph.ainvoke({"question": "grpc", "delay_seconds": 0}, config))
    second = asyncio.run(graph.ainvoke({"question": "nats", "delay_seconds": 0}, config))
    assert [d["id"] for d in first["documents"]] == ["grpc-1", "grpc-2"]
    assert [d["id"] for d in second["documents"]] == ["grpc-1", "grpc-2", "nats-1"]
    assert second["sources"] == ["grpc-1", "grpc-2", "nats-1"]  # ranked over the accumulated documents

    v1 = registry.compiled("research_assistant", "1", checkpointer=InMemorySaver())
    config = cfg()
    asyncio.run(v1.ainvoke({"question": "grpc", "delay_seconds": 0}, config))
    again = asyncio.run(v1.ainvoke({"question": "nats", "delay_seconds": 0}, config))
    assert [d["id"] for d in again["results"]] == ["nats-1"]


def test_v2_retries_retrieve_per_manifest(registry):
    graph = registry.compiled("research_assistant", "2", checkpointer=InMemorySaver())
    out = asyncio.run(graph.ainvoke({"question": "grpc deadlines", "delay_seconds": 0,
                                     "fail_first_attempts": 2}, cfg()))
    assert out["sources"] == ["grpc-2", "grpc-1"]  # two failures, third attempt (max 3) succeeds
    assert [d["id"] for d in out["documents"]] == ["grpc-1", "grpc-2"]  # failed attempts wrote nothing
