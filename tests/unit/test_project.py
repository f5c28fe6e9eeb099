"""A project's deploy-time settings (langgraph.json `dependencies`, `env`) and how graphs load:
compiled graphs get guards and retries, factories get the run's config."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from graphmesh import guard, secrets
from graphmesh.errors import FailedPrecondition
from graphmesh.manifest import ManifestError, parse_project
from graphmesh.project import activate, is_credential, missing_packages, project_env
from graphmesh.registry import Registry

LANGGRAPH_JSON = {"dependencies": ["."], "graphs": {"g": "./agent.py:graph"}, "env": ".env"}


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    secrets._reset_for_tests()
    guard.install_check(lambda graph, node: None)
    yield
    secrets._reset_for_tests()
    guard.install_check(lambda graph, node: None)


def _project(tmp_path, config: dict, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    return tmp_path / "langgraph.json"


def test_dependencies_split_into_local_paths_and_packages(tmp_path):
    (tmp_path / "lib" / "src").mkdir(parents=True)
    (tmp_path / "lib" / "pyproject.toml").write_text("")
    project = parse_project({"dependencies": [".", "./lib", "langchain-openai>=0.3"], "graphs": {}},
                            str(tmp_path / "langgraph.json"), str(tmp_path))
    assert project.paths == (str(tmp_path), str(tmp_path / "lib"), str(tmp_path / "lib" / "src"))
    assert project.packages == ("langchain-openai>=0.3",)


def test_bad_project_settings_name_what_is_wrong(tmp_path):
    source = str(tmp_path / "langgraph.json")
    with pytest.raises(ManifestError, match="dependency './missing' is not a directory"):
        parse_project({"dependencies": ["./missing"]}, source, str(tmp_path))
    with pytest.raises(ManifestError, match="'env' names '.env', which is not a file"):
        parse_project({"env": ".env"}, source, str(tmp_path))
    with pytest.raises(ManifestError, match="'env' must be a .env file path or an object"):
        parse_project({"env": ["A=1"]}, source, str(tmp_path))


def test_unused_langgraph_json_keys_become_notices(tmp_path):
    project = parse_project({"graphs": {}, "auth": {"path": "x:y"}, "store": {}, "my_key": 1},
                            str(tmp_path / "langgraph.json"), str(tmp_path))
    assert [n.split(": ", 1)[1] for n in project.notices] == [
        "'auth' is not used by graphmesh (graphmesh authenticates with its own tokens (docs/security.md))",
        "'my_key' is not used by graphmesh (not a key graphmesh knows)",
        "'store' is not used by graphmesh (graphmesh provides no long-term store yet)",
    ]


def test_env_file_then_inline_object(tmp_path):
    (tmp_path / ".env").write_text("A=from-file\nB='quoted value'\n# comment\nexport C=3\n")
    project = parse_project({"env": ".env"}, str(tmp_path / "langgraph.json"), str(tmp_path))
    assert project_env(project) == {"A": "from-file", "B": "quoted value", "C": "3"}
    inline = parse_project({"env": {"A": "x", "N": 5, "F": True}}, str(tmp_path / "g.json"), str(tmp_path))
    assert project_env(inline) == {"A": "x", "N": "5", "F": "true"}


@pytest.mark.parametrize(("name", "value", "secret"), [
    ("OPENAI_API_KEY", "sk-abc", True),
    ("GITHUB_TOKEN", "ghp_x", True),
    ("DB_PASSWORD", "hunter2", True),
    ("DATABASE_URL", "postgres://app:pw@db/app", True),
    ("ANYTHING", "a8f7e6d5c4b3a2f1e0d9", True),  # looks random: a credential by its value
    ("WEATHER_UNITS", "metric", False),
    ("OPENAI_MODEL", "gpt-4o-mini", False),
    ("LANGSMITH_TRACING", "true", False),
    ("GREETING", "hello there my friend 2", False),  # spaces: prose, not a credential
])
def test_which_project_variables_are_secrets(name, value, secret):
    assert is_credential(name, value) is secret


def test_activate_fills_the_environment_without_overriding_it_and_registers_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("GM_TEST_API_KEY", raising=False)
    monkeypatch.delenv("GM_TEST_UNITS", raising=False)
    monkeypatch.setenv("GM_TEST_REGION", "eu-deploy")
    monkeypatch.setattr(sys, "path", list(sys.path))
    project = parse_project({"dependencies": ["."], "env": {"GM_TEST_API_KEY": "key-0123456789", "GM_TEST_UNITS":
                            "metric", "GM_TEST_REGION": "us-file"}}, str(tmp_path / "langgraph.json"), str(tmp_path))
    activate(project)
    assert os.environ["GM_TEST_API_KEY"] == "key-0123456789" and os.environ["GM_TEST_UNITS"] == "metric"
    assert os.environ["GM_TEST_REGION"] == "eu-deploy"  # the deployment's own value wins
    assert sys.path[0] == str(tmp_path)
    assert secrets.redact("k=key-0123456789 u=metric") == "k=*** u=metric"


def test_a_missing_or_mismatched_package_says_what_to_install(tmp_path):
    project = parse_project({"dependencies": ["surely-not-installed-pkg", "pytest>=999", "pytest"]},
                            str(tmp_path / "langgraph.json"), str(tmp_path))
    problems = missing_packages(project)
    assert len(problems) == 2
    assert "'surely-not-installed-pkg' is not installed" in problems[0] and "pip install" in problems[0]
    assert "needs pytest>=999" in problems[1]
    with pytest.raises(FailedPrecondition, match="surely-not-installed-pkg"):
        activate(project)


COMPILED = """
from typing_extensions import TypedDict
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from pkg.steps import first, second


class S(TypedDict, total=False):
    log: list


builder = StateGraph(S)
builder.add_node("first", first)
builder.add_node("second", second)
builder.add_edge(START, "first")
builder.add_edge("first", "second")
builder.add_edge("second", END)
graph = builder.compile(checkpointer=InMemorySaver(), interrupt_before=["second"])


def make_graph(config):
    tenant = config["metadata"].get("tenant", "none")
    b = StateGraph(S)
    b.add_node("only", lambda s: {"log": [tenant]})
    b.add_edge(START, "only")
    return b.compile()
"""
STEPS = "def first(s):\n    return {'log': ['first']}\n\n\ndef second(s):\n    return {'log': ['second']}\n"


def _registry(tmp_path) -> Registry:
    path = _project(tmp_path, {"dependencies": ["."], "graphs": {"compiled": "./agent.py:graph",
                                                                 "factory": "./agent.py:make_graph"}},
                    {"agent.py": COMPILED, "pkg/__init__.py": "", "pkg/steps.py": STEPS})
    return Registry.from_file(path)


def test_a_compiled_graph_is_recompiled_with_guards_and_keeps_its_compile_options(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    graph = _registry(tmp_path).compiled("compiled", "1")
    assert graph.checkpointer is None  # its InMemorySaver is gone: workers bind Postgres per run
    assert graph.interrupt_before_nodes == ["second"]
    guard.install_check(lambda g, node: "switched off" if (g, node) == ("compiled", "first") else None)
    with pytest.raises(guard.NodeDisabled, match="node 'first' of graph 'compiled' is disabled"):
        graph.invoke({"log": []})


def test_a_factory_makes_a_graph_per_run_from_its_config(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    registry = _registry(tmp_path)
    assert registry.node_names("factory", "1") == ["only"]  # from the graph made at load time

    async def run(tenant: str):
        config = {"configurable": {"thread_id": tenant}, "metadata": {"tenant": tenant}}
        async with registry.graph_for_run("factory", "1", config, checkpointer=None) as graph:
            return await graph.ainvoke({"log": []}, {"configurable": {}})

    assert asyncio.run(run("acme")) == {"log": ["acme"]}
    assert asyncio.run(run("globex")) == {"log": ["globex"]}
