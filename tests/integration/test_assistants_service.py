"""AssistantService and GraphService.DescribeGraph against the shared mesh: a system
assistant for every declared graph (LangGraph's ids), a graph name as an assistant id,
create / update / delete with their refusals, searching and counting, and the shapes
DescribeGraph gives (LangGraph's drawable graph and JSON schemas). Also the pure merge of an
assistant's config and context into a run's options (graphmesh/assistants.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid

import grpc
import psycopg
import pytest
from google.protobuf import json_format

from graphmesh.assistants import apply_assistant, merge_run_config, system_assistant_id, system_assistants
from graphmesh.cli import assistants as assistants_cli
from graphmesh.client import channel
from graphmesh.db import make_pool
from graphmesh.store import RunStore
from graphmesh.store.assistants import AssistantStore
from graphmesh.v1 import assistant_service_pb2 as pb
from graphmesh.v1 import assistant_service_pb2_grpc, run_pb2
from graphmesh.v1 import graph_service_pb2 as gpb
from helpers import rpc_error, struct, to_dict


@pytest.fixture(scope="module")
def assistants(mesh):
    ch = channel(mesh.api_address)
    yield assistant_service_pb2_grpc.AssistantServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def team() -> str:
    """Metadata every assistant of this module carries, so searches see only ours."""
    return f"team-{uuid.uuid4().hex[:8]}"


def listed(assistants, **fields) -> list[pb.Assistant]:
    fields.setdefault("limit", 1000)
    for key in ("metadata",):
        if isinstance(fields.get(key), dict):
            fields[key] = struct(fields[key])
    return list(assistants.ListAssistants(pb.ListAssistantsRequest(**fields), timeout=10).assistants)


def test_every_graph_has_its_system_assistant(client, assistants):
    graphs = [g.name for g in client.graphs.ListGraphs(gpb.ListGraphsRequest(), timeout=10).graphs]
    system = {a.graph: a for a in listed(assistants, metadata={"created_by": "system"})}
    assert sorted(system) == sorted(graphs)
    for graph, a in system.items():
        # LangGraph's server names them uuid5(NAMESPACE_GRAPH, graph): clients may have stored these ids.
        assert a.assistant_id == str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), graph))
        assert (a.name, a.system, a.version, to_dict(a.metadata)) == (graph, True, 1, {"created_by": "system"})
    # A graph name works as an assistant id; so does the id itself.
    by_name = assistants.GetAssistant(pb.GetAssistantRequest(assistant_id="tiny"), timeout=10).assistant
    by_id = assistants.GetAssistant(pb.GetAssistantRequest(assistant_id=system_assistant_id("tiny")),
                                    timeout=10).assistant
    assert by_name == by_id and by_name.graph == "tiny"
    with rpc_error(grpc.StatusCode.NOT_FOUND, "ASSISTANT_NOT_FOUND"):
        assistants.GetAssistant(pb.GetAssistantRequest(assistant_id="no-such-graph"), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "ASSISTANT_NOT_FOUND"):
        assistants.GetAssistant(pb.GetAssistantRequest(assistant_id=str(uuid.uuid4())), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        assistants.GetAssistant(pb.GetAssistantRequest(), timeout=10)

    mask = pb.UpdateAssistantRequest(assistant_id="tiny", assistant=pb.Assistant(name="mine"))
    mask.update_mask.paths.append("name")
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "SYSTEM_ASSISTANT"):
        assistants.UpdateAssistant(mask, timeout=10)
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "SYSTEM_ASSISTANT"):
        assistants.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id="tiny"), timeout=10)


def test_create_update_delete(assistants, team):
    aid = str(uuid.uuid4())
    request = pb.CreateAssistantRequest(
        assistant_id=aid, graph="tiny", name="Tiny Helper", description="says hello",
        config=struct({"configurable": {"model": "m1"}, "tags": ["a"], "recursion_limit": 7}),
        context=struct({"lang": "en"}), metadata=struct({"team": team}))
    made = assistants.CreateAssistant(request, timeout=10)
    a = made.assistant
    assert made.created and (a.assistant_id, a.graph, a.name, a.version, a.system) == (aid, "tiny", "Tiny Helper", 1,
                                                                                        False)
    assert to_dict(a.config) == {"configurable": {"model": "m1"}, "tags": ["a"], "recursion_limit": 7}
    assert to_dict(a.context) == {"lang": "en"}

    with rpc_error(grpc.StatusCode.ALREADY_EXISTS, "ASSISTANT_EXISTS"):
        assistants.CreateAssistant(request, timeout=10)
    request.if_exists = pb.ASSISTANT_IF_EXISTS_DO_NOTHING
    again = assistants.CreateAssistant(request, timeout=10)
    assert not again.created and again.assistant == a
    unnamed = assistants.CreateAssistant(pb.CreateAssistantRequest(graph="approval_workflow",
                                                                   metadata=struct({"team": team})), timeout=10)
    assert unnamed.assistant.name == "Untitled" and uuid.UUID(unnamed.assistant.assistant_id)

    for bad, status, code in (
            (pb.CreateAssistantRequest(graph="tiny", assistant_id="not-a-uuid"), "INVALID_ARGUMENT",
             "INVALID_ASSISTANT_ID"),
            (pb.CreateAssistantRequest(graph="no-such-graph"), "NOT_FOUND", "GRAPH_NOT_FOUND"),
            (pb.CreateAssistantRequest(), "INVALID_ARGUMENT", "INVALID_ASSISTANT"),
            (pb.CreateAssistantRequest(graph="tiny", config=struct({"tags": "a"})), "INVALID_ARGUMENT",
             "INVALID_ASSISTANT_CONFIG"),
            (pb.CreateAssistantRequest(graph="tiny", config=struct({"recursion_limit": 0})), "INVALID_ARGUMENT",
             "INVALID_ASSISTANT_CONFIG")):
        with rpc_error(getattr(grpc.StatusCode, status), code):
            assistants.CreateAssistant(bad, timeout=10)

    change = pb.UpdateAssistantRequest(assistant_id=aid, assistant=pb.Assistant(
        name="Renamed", graph="approval_workflow", context=struct({"lang": "de"})))
    change.update_mask.paths.extend(["name", "context"])
    updated = assistants.UpdateAssistant(change, timeout=10).assistant
    assert (updated.name, updated.graph, updated.version, to_dict(updated.context)) == ("Renamed", "tiny", 2,
                                                                                       {"lang": "de"})
    assert to_dict(updated.config) == to_dict(a.config)  # not in the mask: unchanged
    assert updated.updated_at.ToDatetime() >= a.updated_at.ToDatetime() and updated.created_at == a.created_at
    change.update_mask.paths[:] = ["graph"]
    moved = assistants.UpdateAssistant(change, timeout=10).assistant
    assert (moved.graph, moved.version) == ("approval_workflow", 3)
    change.update_mask.paths[:] = []
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK"):
        assistants.UpdateAssistant(change, timeout=10)
    change.update_mask.paths[:] = ["version"]
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK"):
        assistants.UpdateAssistant(change, timeout=10)

    assistants.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=aid), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "ASSISTANT_NOT_FOUND"):
        assistants.GetAssistant(pb.GetAssistantRequest(assistant_id=aid), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "ASSISTANT_NOT_FOUND"):
        assistants.DeleteAssistant(pb.DeleteAssistantRequest(assistant_id=aid), timeout=10)


def test_search_and_count(assistants, team):
    made = []
    for name, graph in (("Alpha Bot", "tiny"), ("beta bot", "tiny"), ("Gamma", "approval_workflow")):
        made.append(assistants.CreateAssistant(pb.CreateAssistantRequest(
            graph=graph, name=name, metadata=struct({"team": team, "name": name})), timeout=10).assistant)
    mine = {"team": team}
    assert {a.name for a in listed(assistants, metadata=mine)} >= {"Alpha Bot", "beta bot", "Gamma"}
    assert [a.name for a in listed(assistants, metadata=mine, name="BOT", sort_by=pb.ASSISTANT_SORT_BY_NAME,
                                   ascending=True)] == ["Alpha Bot", "beta bot"]
    assert [a.name for a in listed(assistants, metadata={**mine, "name": "Gamma"})] == ["Gamma"]
    assert {a.graph for a in listed(assistants, metadata=mine, graph="tiny")} == {"tiny"}
    assert [a.name for a in listed(assistants, name="%")] == []  # wildcards are matched literally
    newest = listed(assistants, metadata=mine)
    assert [a.created_at.ToDatetime() for a in newest] == sorted((a.created_at.ToDatetime() for a in newest),
                                                                 reverse=True)
    count = assistants.CountAssistants(pb.CountAssistantsRequest(metadata=struct(mine)), timeout=10).count
    assert count == len(newest)
    assert assistants.CountAssistants(pb.CountAssistantsRequest(metadata=struct(mine), graph="tiny", name="bot"),
                                      timeout=10).count == 2
    first = assistants.ListAssistants(pb.ListAssistantsRequest(metadata=struct(mine), limit=2), timeout=10)
    rest = assistants.ListAssistants(pb.ListAssistantsRequest(metadata=struct(mine), limit=100, offset=2), timeout=10)
    assert first.has_more and not rest.has_more
    assert [a.assistant_id for a in [*first.assistants, *rest.assistants]] == [a.assistant_id for a in newest]
    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND"):
        assistants.ListAssistants(pb.ListAssistantsRequest(graph="no-such-graph"), timeout=10)
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        assistants.ListAssistants(pb.ListAssistantsRequest(limit=5000), timeout=10)


# -- DescribeGraph --------------------------------------------------------------------------

def describe(client, graph: str, **fields) -> gpb.DescribeGraphResponse:
    return client.graphs.DescribeGraph(gpb.DescribeGraphRequest(graph=graph, **fields), timeout=30)


def test_describe_graph_shapes(client):
    tiny = describe(client, "tiny")
    assert (tiny.graph, tiny.graph_version) == ("tiny", "1")
    drawable = to_dict(tiny.drawable)
    assert [n["id"] for n in drawable["nodes"]] == ["__start__", "normalize", "count", "summarize", "__end__"]
    assert {(e["source"], e["target"]) for e in drawable["edges"]} == {
        ("__start__", "normalize"), ("normalize", "count"), ("count", "summarize"), ("summarize", "__end__")}
    assert all("id" not in n.get("data", {}) for n in drawable["nodes"])  # no Python class paths
    schemas = json_format.MessageToDict(tiny.schemas)
    assert schemas["inputSchema"]["required"] == ["text"]
    assert set(schemas["outputSchema"]["properties"]) == {"text", "normalized", "word_count", "char_count", "summary"}
    assert set(schemas["stateSchema"]["properties"]) == {"text", "normalized", "word_count", "char_count", "summary"}
    assert schemas["configSchema"] == {}
    assert tiny.schemas.context_schema.WhichOneof("kind") == "null_value"  # tiny declares no context
    assert dict(tiny.subgraphs) == {}

    # The version new runs go to (v2 of research_assistant has weight 0), or the one asked for.
    assert describe(client, "research_assistant").graph_version == "1"
    v2 = describe(client, "research_assistant", graph_version="2")
    assert "retrieve" in {n["id"] for n in to_dict(v2.drawable)["nodes"]}
    assert describe(client, "approval_workflow", xray=-1).drawable == describe(client, "approval_workflow").drawable
    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_NOT_FOUND"):
        describe(client, "no-such-graph")
    with rpc_error(grpc.StatusCode.NOT_FOUND, "GRAPH_VERSION_NOT_FOUND"):
        describe(client, "tiny", graph_version="9")
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT):
        describe(client, "tiny", xray=-2)


# -- merging an assistant into a run's options (pure) ---------------------------------------

def test_run_options_take_the_assistants_config_and_context_under_their_own():
    assistant = pb.Assistant(config=struct({"configurable": {"model": "a", "temp": 1}, "tags": ["x"],
                                            "recursion_limit": 9}), context=struct({"lang": "en", "tone": "dry"}))
    options = run_pb2.RunOptions(configurable=struct({"model": "b"}), context=struct({"lang": "de"}), tags=["y", "x"],
                                 stream_modes=["values"])
    merged = apply_assistant(assistant, options)
    assert to_dict(merged.configurable) == {"model": "b", "temp": 1}
    assert to_dict(merged.context) == {"lang": "de", "tone": "dry"}
    assert list(merged.tags) == ["x", "y"] and merged.recursion_limit == 9
    assert list(merged.stream_modes) == ["values"]
    assert to_dict(options.configurable) == {"model": "b"}  # the arguments stay as they were
    options.recursion_limit = 3
    assert apply_assistant(assistant, options).recursion_limit == 3
    bare = apply_assistant(pb.Assistant(), run_pb2.RunOptions())
    assert not bare.HasField("configurable") and not bare.HasField("context") and not bare.tags

    config, context = merge_run_config({"configurable": {"a": 1}, "other": True}, {"c": 1}, {"configurable": {"b": 2}})
    assert config == {"configurable": {"a": 1, "b": 2}, "other": True} and context == {"c": 1}


# -- the CLI (`graphmesh assistants`, called in-process) -------------------------------------

def cli(mesh, capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    assistants_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.api = mesh.api_address
    code = args.func(args)
    return code, capsys.readouterr().out


def test_cli_creates_shows_lists_and_deletes_assistants(mesh, capsys, team):
    code, out = cli(mesh, capsys, "assistants", "create", "tiny", "--name", "From CLI", "--metadata",
                    json.dumps({"team": team, "cli": True}), "--config", '{"tags": ["cli"]}', "--json")
    made = json.loads(out)["assistant"]
    assert code == 0 and made["name"] == "From CLI" and made["config"] == {"tags": ["cli"]}
    code, out = cli(mesh, capsys, "assistants", "get", made["assistant_id"])
    assert code == 0 and "name       From CLI" in out and '"cli"' in out
    code, out = cli(mesh, capsys, "assistants", "get", "tiny")
    assert code == 0 and "(system: the graph's own)" in out
    code, out = cli(mesh, capsys, "assistants", "list", "--metadata", json.dumps({"team": team, "cli": True}))
    assert code == 0 and out.split()[:3] == [made["assistant_id"], "tiny", "From"]
    code, out = cli(mesh, capsys, "assistants", "delete", made["assistant_id"])
    assert code == 0 and out.strip() == f"deleted assistant {made['assistant_id']}"
    with rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "SYSTEM_ASSISTANT"):
        cli(mesh, capsys, "assistants", "delete", system_assistant_id("tiny"))


def test_version5_ids_are_reserved_for_system_assistants(assistants, team):
    # uuid5 of a graph not declared yet: a client holding it would squat that graph's name later.
    future = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "newgraph"))
    for if_exists in (pb.ASSISTANT_IF_EXISTS_RAISE, pb.ASSISTANT_IF_EXISTS_DO_NOTHING):
        with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "RESERVED_ASSISTANT_ID"):
            assistants.CreateAssistant(pb.CreateAssistantRequest(
                assistant_id=future, graph="tiny", if_exists=if_exists, metadata=struct({"team": team})), timeout=10)
    # Any version-5 id, not just uuid5 of a name in LangGraph's namespace.
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "RESERVED_ASSISTANT_ID"):
        assistants.CreateAssistant(pb.CreateAssistantRequest(assistant_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")),
                                                             graph="tiny"), timeout=10)
    # A graph's own system id with DO_NOTHING: it exists, and comes back as it is.
    same = assistants.CreateAssistant(pb.CreateAssistantRequest(
        assistant_id=system_assistant_id("tiny"), graph="tiny", if_exists=pb.ASSISTANT_IF_EXISTS_DO_NOTHING),
        timeout=10)
    assert not same.created and same.assistant.system and same.assistant.graph == "tiny"
    assert listed(assistants, metadata={"team": team}, graph="tiny", name="Untitled") == []


def _sql(mesh, statement: str, *args) -> None:
    with psycopg.connect(mesh.database_url, autocommit=True) as conn:
        conn.execute(statement, args)


def test_a_squatted_system_id_resolves_to_nothing(mesh, assistants, caplog):
    """A client's row on a graph's system id (made before such ids were refused): the graph's
    name and id resolve to no assistant rather than to it, and insert_system says why."""
    tiny = system_assistant_id("tiny")
    _sql(mesh, "UPDATE gm_assistants SET system = false, owner = 'mallory', graph = 'approval_workflow' "
               "WHERE assistant_id = %s", tiny)
    try:
        for name_or_id in ("tiny", tiny):
            with rpc_error(grpc.StatusCode.NOT_FOUND, "ASSISTANT_NOT_FOUND"):
                assistants.GetAssistant(pb.GetAssistantRequest(assistant_id=name_or_id), timeout=10)

        async def insert() -> int:
            pool = make_pool(mesh.database_url, max_size=2)
            await pool.open()
            try:
                return await AssistantStore(RunStore(pool)).insert_system(system_assistants(["tiny"]))
            finally:
                await pool.close()

        with caplog.at_level(logging.ERROR, logger="graphmesh.store.assistants"):
            assert asyncio.run(insert()) == 0
        assert any("graph 'tiny' has no system assistant" in r.getMessage() for r in caplog.records)
    finally:
        _sql(mesh, "UPDATE gm_assistants SET system = true, owner = '', graph = 'tiny' WHERE assistant_id = %s", tiny)
    assert assistants.GetAssistant(pb.GetAssistantRequest(assistant_id="tiny"), timeout=10).assistant.system
