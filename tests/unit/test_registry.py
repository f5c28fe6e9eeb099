"""Registry, manifest parsing, input validation, and the example graphs run in-process."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound
from graphmesh.registry import Limits, ManifestError, NodePolicy, Registry, RetrySpec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_file(REPO / "graphmesh" / "examples.yaml")


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


# -- manifest ------------------------------------------------------------------------------


def test_default_manifest_declares_the_examples(registry):
    assert registry.names() == ["tiny", "research_assistant", "approval_workflow", "parallel_review",
                                "approval_with_deadline", "chat"]
    tiny = registry.get("tiny")
    assert tiny.sync_eligible and tiny.version == "1" and tiny.path == "graphs.tiny:graph"
    assert tiny.limits == Limits(max_steps=25, run_timeout_seconds=60, max_input_bytes=65536, max_concurrent_runs=0)
    assert tiny.versions() == {"graph_version": "1", "prompt_version": "none", "model_route": "none",
                               "tool_version": "1", "state_schema_version": "1"}
    research = registry.get("research_assistant")
    assert not research.sync_eligible
    assert research.nodes["search"].retry == RetrySpec(max_attempts=3, backoff_seconds=0.2)
    apply = registry.get("approval_workflow").nodes["apply_change"]
    assert apply == NodePolicy(mutates=True, requires_approval=True, role="reviewer", approval_timeout_seconds=None,
                               resume="record")
    assert registry.get("approval_with_deadline").nodes["apply_change"].approval_timeout_seconds == 3
    assert registry.get("parallel_review").nodes["legal_review"].role == "legal"


def test_node_names(registry):
    assert registry.node_names("tiny", "1") == ["normalize", "count", "summarize"]
    assert registry.node_names("research_assistant", "1") == ["plan", "search", "rank", "summarize", "write_report"]
    assert registry.node_names("approval_workflow", "1") == ["prepare", "review", "apply_change"]


def test_defaults_and_version_selection(tmp_path):
    path = write(tmp_path, "graphmesh.yaml", """
        graphs:
          - {name: g, version: 1, path: graphs.tiny:graph}
          - {name: g, version: "2", path: graphs.tiny:graph, weight: 100}
          - {name: g, version: "3", path: graphs.tiny:graph, weight: 0}
    """)
    reg = Registry.from_file(path)
    v1 = reg.get("g", "1")
    assert v1.version == "1"  # YAML int accepted as a version label
    assert v1.limits == Limits() and v1.nodes == {} and v1.weight == 100 and not v1.sync_eligible
    assert v1.state_schema_version == "1" and v1.migrations == ()
    assert reg.get("g").version == "2"  # highest weight; tie between 1 and 2 -> latest declared
    assert [s.version for s in reg.versions("g")] == ["1", "2", "3"]


def test_unknown_graph_and_version(registry):
    with pytest.raises(NotFound, match=r"graph 'nope' is not registered \(known: tiny, research_assistant"):
        registry.get("nope")
    with pytest.raises(NotFound, match=r"graph 'tiny' has no version '9' \(known: 1\)"):
        registry.get("tiny", "9")


@pytest.mark.parametrize("entry, message", [
    ("{name: a, version: '1', path: graphs.tiny:graph, colour: red}", "unknown key.*colour"),
    ("{version: '1', path: graphs.tiny:graph}", "missing required key 'name'"),
    ("{name: a, version: '1'}", "missing required key 'path'"),
    ("{name: a, version: '1', path: graphs.tiny}", "must look like 'module:attribute'"),
    ("{name: a, version: '1', path: x:y, sync: 'yes'}", "'sync' must be true or false"),
    ("{name: a, version: '1', path: x:y, limits: {max_steps: 0}}", "'max_steps' must be >= 1"),
    ("{name: a, version: '1', path: x:y, limits: {max_step: 3}}", "unknown key.*max_step"),
    ("{name: a, version: '1', path: x:y, nodes: {n: {retry: {max_attempts: two}}}}", "'max_attempts' must be an integer"),
    ("{name: a, version: '1', path: x:y, nodes: {n: {mutate: true}}}", "unknown key.*nodes.n"),
    ("{name: 'bad name', version: '1', path: x:y}", "'name' 'bad name' must match"),
    ("{name: a, version: '1', path: x:y, durability: eventually}", "'durability' must be one of async, sync, exit"),
    ("{name: a, version: '1', path: x:y, durability: exit, nodes: {pay: {mutates: true}}}",
     "durability 'exit' would re-run the mutating node.* pay"),
])
def test_invalid_manifest_entries(tmp_path, entry, message):
    path = write(tmp_path, "graphmesh.yaml", f"graphs:\n  - {entry}\n")
    with pytest.raises(ManifestError, match=message) as err:
        Registry.from_file(path)
    assert str(path) in str(err.value)
    assert "graphs[0]" in str(err.value) or "graph 'a'" in str(err.value)


def test_duplicate_and_malformed_manifests(tmp_path):
    dup = write(tmp_path, "dup.yaml", """
        graphs:
          - {name: a, version: "1", path: graphs.tiny:graph}
          - {name: a, version: "1", path: graphs.tiny:graph}
    """)
    with pytest.raises(ManifestError, match="graph 'a' version '1' is declared twice"):
        Registry.from_file(dup)
    with pytest.raises(ManifestError, match="non-empty list"):
        Registry.from_file(write(tmp_path, "empty.yaml", "graphs: []\n"))
    with pytest.raises(ManifestError, match="not valid YAML"):
        Registry.from_file(write(tmp_path, "broken.yaml", "graphs: [\n"))
    with pytest.raises(ManifestError, match="cannot read manifest"):
        Registry.from_file(tmp_path / "missing.yaml")
    assert issubclass(ManifestError, ValueError)


def test_langgraph_json_registers_a_user_graph(tmp_path):
    write(tmp_path, "my_graph.py", """
        from typing_extensions import TypedDict
        from langgraph.graph import StateGraph, START, END

        class State(TypedDict, total=False):
            name: str
            greeting: str

        def greet(state):
            return {"greeting": "hello " + state["name"]}

        graph = StateGraph(State)
        graph.add_node("greet", greet)
        graph.add_edge(START, "greet")
        graph.add_edge("greet", END)
    """)
    path = write(tmp_path, "langgraph.json", json.dumps({"dependencies": ["."],
                                                          "graphs": {"hello": "./my_graph.py:graph"}}))
    reg = Registry.from_file(path)
    spec = reg.get("hello")
    assert (spec.version, spec.limits, spec.sync_eligible) == ("1", Limits(), False)
    assert reg.node_names("hello", "1") == ["greet"]
    assert reg.compiled("hello", "1").invoke({"name": "ada"})["greeting"] == "hello ada"
    with pytest.raises(InvalidArgument, match="unknown key"):
        reg.validate_input(spec, {"nam": "ada"})


def test_module_path_next_to_manifest_and_typing_typeddict(tmp_path):
    # module:attr imports from the manifest's directory; typing.TypedDict (which pydantic
    # cannot schema on 3.11) still gets key and type checks from its annotations.
    write(tmp_path, "usermod_reg_test.py", """
        from typing import TypedDict
        from langgraph.graph import StateGraph, START
        class In(TypedDict):
            n: int
        class State(In, total=False):
            doubled: int
        graph = StateGraph(State, input_schema=In)
        graph.add_node("double", lambda s: {"doubled": s["n"] * 2})
        graph.add_edge(START, "double")
    """)
    reg = Registry.from_file(write(tmp_path, "graphmesh.yaml", """
        graphs:
          - {name: d, version: "1", path: "usermod_reg_test:graph"}
    """))
    spec = reg.get("d")
    assert reg.validate_input(spec, {"n": 2.0}) == {"n": 2}
    with pytest.raises(InvalidArgument, match="missing required key 'n'"):
        reg.validate_input(spec, {})
    with pytest.raises(InvalidArgument, match="key 'n' must be integer, got string"):
        reg.validate_input(spec, {"n": "2"})


def test_load_errors_name_the_path(tmp_path):
    reg = Registry.from_file(write(tmp_path, "graphmesh.yaml", """
        graphs:
          - {name: a, version: "1", path: "no_such_module_xyz:graph"}
          - {name: b, version: "1", path: "./missing.py:graph"}
          - {name: c, version: "1", path: "graphs.tiny:nope"}
          - {name: d, version: "1", path: "graphs.tiny:graph", nodes: {nodo: {mutates: true}}}
    """))
    with pytest.raises(FailedPrecondition, match="cannot load 'no_such_module_xyz:graph'"):
        reg.compiled("a", "1")
    with pytest.raises(FailedPrecondition, match=r"cannot load './missing.py:graph'"):
        reg.compiled("b", "1")
    with pytest.raises(FailedPrecondition, match="cannot load 'graphs.tiny:nope'.*AttributeError"):
        reg.compiled("c", "1")
    with pytest.raises(FailedPrecondition, match="unknown node.*nodo"):
        reg.compiled("d", "1")


def test_compiled_is_cached_and_accepts_compiled_graphs(tmp_path, registry):
    assert registry.compiled("tiny", "1") is registry.compiled("tiny", "1")
    saver = InMemorySaver()
    assert registry.compiled("tiny", "1", checkpointer=saver).checkpointer is saver
    assert registry.compiled("tiny", "1").checkpointer is None
    write(tmp_path, "pre.py", "from graphs.tiny import graph as g\ngraph = g.compile()\n")
    reg = Registry.from_file(write(tmp_path, "langgraph.json", '{"graphs": {"pre": "./pre.py:graph"}}'))
    assert reg.compiled("pre", "1").invoke({"text": "a b"})["word_count"] == 2


def test_default_uses_env_then_cwd_then_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHMESH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Registry.default().source == str(REPO / "graphmesh" / "examples.yaml")
    own = write(tmp_path, "graphmesh.yaml", "graphs:\n  - {name: mine, version: '1', path: graphs.tiny:graph}\n")
    assert Registry.default().names() == ["mine"]
    other = write(tmp_path, "other.yaml", "graphs:\n  - {name: env, version: '1', path: graphs.tiny:graph}\n")
    monkeypatch.setenv("GRAPHMESH_CONFIG", str(other))
    assert Registry.default().names() == ["env"] and own.exists()


# -- input validation ----------------------------------------------------------------------


def test_validate_input_accepts_good_input(registry):
    assert registry.validate_input(registry.get("tiny"), {"text": "hi"}) == {"text": "hi"}
    research = registry.get("research_assistant")
    # Struct numbers arrive as doubles: integral ones become ints for integer fields.
    assert registry.validate_input(research, {"question": "q", "max_results": 2.0, "delay_seconds": 1}) == \
        {"question": "q", "max_results": 2, "delay_seconds": 1}


@pytest.mark.parametrize("value, code, message", [
    ([1, 2], "INPUT_NOT_OBJECT", "must be a JSON object, got array"),
    ("text", "INPUT_NOT_OBJECT", "must be a JSON object, got string"),
    (None, "INPUT_NOT_OBJECT", "must be a JSON object, got null"),
    ({}, "INVALID_INPUT", "missing required key 'text'"),
    ({"text": "a", "extra": 1}, "INVALID_INPUT", r"unknown key\(s\) 'extra' \(known: text\)"),
    ({"text": 3}, "INVALID_INPUT", "key 'text' must be string, got integer"),
    ({"text": None}, "INVALID_INPUT", "key 'text' must be string, got null"),
    ({"text": "x" * 70000}, "INPUT_TOO_LARGE", r"is 70011 bytes, over the limit max_input_bytes=65536"),
])
def test_validate_input_rejects(registry, value, code, message):
    with pytest.raises(InvalidArgument, match=message) as err:
        registry.validate_input(registry.get("tiny"), value)
    assert err.value.code == code
    assert "graph 'tiny' version '1'" in err.value.message


def test_validate_input_reports_every_problem(registry):
    with pytest.raises(InvalidArgument) as err:
        registry.validate_input(registry.get("research_assistant"), {"max_results": True, "q": 1})
    msg = err.value.message
    assert "missing required key 'question'" in msg and "unknown key(s) 'q'" in msg
    assert "key 'max_results' must be integer, got boolean" in msg


# -- example graphs end to end -------------------------------------------------------------


def test_tiny_graph(registry):
    graph = registry.compiled("tiny", "1", checkpointer=InMemorySaver())
    out = graph.invoke({"text": "  Hello   LangGraph World  "}, cfg())
    assert out == {"text": "  Hello   LangGraph World  ", "normalized": "hello langgraph world",
                   "word_count": 3, "char_count": 21, "summary": "3 words: hello langgraph world"}


def test_research_graph_streams_progress(registry):
    graph = registry.compiled("research_assistant", "1", checkpointer=InMemorySaver())

    async def run():
        custom, updates = [], []
        async for mode, chunk in graph.astream({"question": "How do LangGraph checkpoints work with Postgres?",
                                                "delay_seconds": 0.05}, cfg(), stream_mode=["custom", "updates"]):
            (custom if mode == "custom" else updates).append(chunk)
        return custom, updates

    custom, updates = asyncio.run(run())
    assert [next(iter(u)) for u in updates] == ["plan", "search", "rank", "summarize", "write_report"]
    stages = [c["stage"] for c in custom]
    assert stages[0] == "plan" and stages[-1] == "write_report" and "search" in stages
    progress = [c["progress"] for c in custom]
    assert progress == sorted(progress) and progress[-1] == 1.0
    report = updates[-1]["write_report"]
    assert report["sources"] == ["lg-1", "pg-1", "lg-2"]  # by matched terms, then id
    assert report["report"].startswith("# How do LangGraph checkpoints work with Postgres?")


def test_research_graph_retries_search_per_manifest(registry):
    graph = registry.compiled("research_assistant", "1", checkpointer=InMemorySaver())
    out = asyncio.run(graph.ainvoke({"question": "grpc deadlines", "delay_seconds": 0,
                                     "fail_first_attempts": 2}, cfg()))
    assert out["sources"] == ["grpc-2", "grpc-1"]  # two failures, third attempt (max 3) succeeds


def _start_approval(registry, **extra):
    graph = registry.compiled("approval_workflow", "1", checkpointer=InMemorySaver())
    config = cfg()
    first = graph.invoke({"action": "refund", "target": "order-17", "amount": 42, "reason": "damaged", **extra},
                         config)
    return graph, config, first


def test_approval_graph_interrupts_with_payload(registry):
    graph, config, first = _start_approval(registry)
    (intr,) = first["__interrupt__"]
    assert intr.value["summary"] == "Refund 42.00 to order-17"
    assert intr.value["proposed_change"] == {"action": "refund", "target": "order-17", "reason": "damaged",
                                             "amount": 42.0}
    assert graph.get_state(config).next == ("review",)
    assert first["applied"] is False


def test_approval_graph_approve(registry):
    graph, config, _ = _start_approval(registry)
    out = graph.invoke(Command(resume={"approved": True, "edited_value": None, "comment": "ok", "reviewer": "rita"}),
                       config)
    assert out["applied"] is True and out["decision"] == "approved" and out["reviewer"] == "rita"
    assert out["final_change"]["amount"] == 42.0 and out["review_comment"] == "ok"
    assert out["receipt"].startswith("refund-")
    assert graph.get_state(config).next == ()


def test_approval_graph_reject(registry):
    graph, config, _ = _start_approval(registry)
    out = graph.invoke(Command(resume={"approved": False, "comment": "no", "reviewer": "rita"}), config)
    assert out["applied"] is False and out["final_change"] is None and out["decision"] == "rejected"
    assert out["review_comment"] == "no" and "receipt" not in out
    history = [s.next for s in graph.get_state_history(config)]
    assert ("apply_change",) not in history


def test_approval_graph_edit(registry):
    graph, config, _ = _start_approval(registry)
    out = graph.invoke(Command(resume={"approved": True, "edited_value": {"amount": 30}, "comment": "partial",
                                       "reviewer": "rita"}), config)
    assert out["applied"] is True and out["decision"] == "edited"
    assert out["final_change"] == {"action": "refund", "target": "order-17", "reason": "damaged", "amount": 30}
