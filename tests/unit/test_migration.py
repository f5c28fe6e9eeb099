"""Checkpoint migrations as pure logic: manifest parsing, migration paths, and upgrading a
real v1 research_assistant checkpoint (written by LangGraph's in-memory saver) so that v2
code continues it. The integration tests (tests/integration/test_compat.py) do the same
against Postgres with committed v1 fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphmesh.execution.migration import MigrationFailed, migrate_thread, upgrade
from graphmesh.manifest import ManifestError, parse_manifest
from graphmesh.registry import Registry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return Registry.from_file(REPO / "graphmesh" / "examples.yaml")


def _entry(**extra):
    return {"name": "g", "version": "2", "path": "m:g", "state_schema_version": "2", **extra}


def test_manifest_parses_declarative_migrations():
    spec, = parse_manifest({"graphs": [_entry(migrations=[{
        "from_schema": "1", "rename_fields": {"a": "b"}, "rename_nodes": {"x": "y"}, "transform": "m:f"}])]},
        "t.yaml", ".")
    m, = spec.migrations
    assert (m.from_schema, dict(m.rename_fields), dict(m.rename_nodes), m.transform) == ("1", {"a": "b"}, {"x": "y"}, "m:f")
    assert m.describe() == ["field a -> b", "node x -> y", "transform m:f"]


@pytest.mark.parametrize("migrations, fragment", [
    ([{"from_schema": "1", "rename_fields": {"a": 3}}], "rename_fields must map"),
    ([{"from_schema": "1", "rename_nodes": {"a": "c", "b": "c"}}], "same new name"),
    ([{"from_schema": "1"}, {"from_schema": "1"}], "more than one migration from state schema 1"),
    ([{"from_schema": "2"}], "own state schema"),
    ([{"from_schema": "1", "path": "m:f"}], "unknown key(s) in migrations[]: path"),
    ([{"from_schema": "1", "transform": "nocolon"}], "must look like 'module:function'"),
])
def test_manifest_rejects_bad_migrations(migrations, fragment):
    with pytest.raises(ManifestError) as err:
        parse_manifest({"graphs": [_entry(migrations=migrations)]}, "t.yaml", ".")
    assert fragment in str(err.value)


def test_migration_path_chains_versions():
    specs = parse_manifest({"graphs": [
        {"name": "g", "version": "1", "path": "m:g", "state_schema_version": "1"},
        _entry(migrations=[{"from_schema": "1", "rename_fields": {"a": "b"}}]),
        {"name": "g", "version": "3", "path": "m:g", "state_schema_version": "3",
         "migrations": [{"from_schema": "2", "rename_nodes": {"x": "y"}}]},
    ]}, "t.yaml", ".")
    reg = Registry(specs)
    path = reg.migration_path("g", "1", "3")
    assert [(s.spec.from_schema, s.target.version) for s in path] == [("1", "2"), ("2", "3")]
    assert reg.migration_path("g", "2", "2") == []
    assert reg.migration_path("g", "3", "1") is None  # no downgrade declared


def _next(current):
    return f"{int(str(current or '0').split('.')[0]) + 1:032}.0"


def test_upgrade_renames_fields_nodes_and_triggers_without_touching_the_input():
    checkpoint = {"v": 4, "id": "c1", "ts": "t", "updated_channels": ["results"],
                  "channel_values": {"results": [1], "branch:to:search": None, "question": "q"},
                  "channel_versions": {"results": "3", "branch:to:search": "4", "question": "1"},
                  "versions_seen": {"search": {"branch:to:search": "2"}, "plan": {"branch:to:plan": "1"}}}
    out = upgrade(checkpoint, rename_fields={"results": "documents"}, rename_nodes={"search": "retrieve"},
                  transform=None, next_version=_next)
    assert out["channel_values"] == {"documents": [1], "branch:to:retrieve": None, "question": "q"}
    assert out["channel_versions"] == {"documents": "3", "branch:to:retrieve": "4", "question": "1"}
    assert out["versions_seen"] == {"retrieve": {"branch:to:retrieve": "2"}, "plan": {"branch:to:plan": "1"}}
    assert out["updated_channels"] == ["documents"]
    assert "results" in checkpoint["channel_values"]  # the original is untouched


def test_upgrade_transform_changes_values_and_bumps_their_versions():
    checkpoint = {"channel_values": {"n": 1, "keep": "k", "gone": 0}, "channel_versions": {"n": "1", "keep": "1", "gone": "2"},
                  "versions_seen": {}}
    out = upgrade(checkpoint, rename_fields={}, rename_nodes={}, next_version=_next,
                  transform=lambda s: {"n": s["n"] * 10, "keep": s["keep"], "added": True})
    assert out["channel_values"] == {"n": 10, "keep": "k", "added": True}
    assert out["channel_versions"]["keep"] == "1" and out["channel_versions"]["n"] == out["channel_versions"]["added"]
    assert "gone" not in out["channel_versions"]
    with pytest.raises(MigrationFailed, match="raised KeyError"):
        upgrade(checkpoint, rename_fields={}, rename_nodes={}, next_version=_next, transform=lambda s: s["nope"])
    with pytest.raises(MigrationFailed, match="already has"):
        upgrade({"channel_values": {}, "channel_versions": {"a": "1", "b": "1"}, "versions_seen": {}},
                rename_fields={"a": "b"}, rename_nodes={}, transform=None, next_version=_next)


def test_v1_thread_paused_before_search_continues_as_v2_retrieve(registry):
    """The pending node is the renamed one: without migration v2 would find nothing to run."""
    async def scenario():
        saver = InMemorySaver()
        cfg = {"configurable": {"thread_id": "t"}}
        v1 = registry.compiled("research_assistant", "1", checkpointer=saver)
        await v1.ainvoke({"question": "langgraph grpc", "delay_seconds": 0}, cfg, interrupt_before=["search"])
        assert (await v1.aget_state(cfg)).next == ("search",)
        steps = registry.migration_path("research_assistant", "1", "2")
        applied = await migrate_thread(saver, "t", steps, transforms=[None] * len(steps),
                                       metadata={"graph_version": "2", "state_schema_version": "2"})
        assert applied.steps == ["field results -> documents", "node search -> retrieve"]
        assert applied.node_renames == {"search": "retrieve"}
        v2 = registry.compiled("research_assistant", "2", checkpointer=saver)
        state = await v2.aget_state(cfg)
        assert state.next == ("retrieve",)
        assert state.metadata["state_schema_version"] == "2"
        assert state.metadata["gm_migrated_from"] == applied.from_checkpoint_id
        final = await v2.ainvoke(None, cfg)
        assert final["sources"] and final["report"].startswith("# langgraph grpc")
        # The v1 checkpoint is still in the thread's history, unchanged.
        history = [c async for c in saver.alist(cfg)]
        assert any(c.checkpoint["id"] == applied.from_checkpoint_id for c in history)
    asyncio.run(scenario())


def test_v1_results_become_v2_documents_and_keep_accumulating(registry):
    async def scenario():
        saver = InMemorySaver()
        cfg = {"configurable": {"thread_id": "t"}}
        v1 = registry.compiled("research_assistant", "1", checkpointer=saver)
        first = await v1.ainvoke({"question": "grpc", "delay_seconds": 0}, cfg)
        steps = registry.migration_path("research_assistant", "1", "2")
        await migrate_thread(saver, "t", steps, transforms=[None], metadata={"state_schema_version": "2"})
        v2 = registry.compiled("research_assistant", "2", checkpointer=saver)
        second = await v2.ainvoke({"question": "nats", "delay_seconds": 0}, cfg)
        ids = [d["id"] for d in second["documents"]]
        assert ids[:len(first["results"])] == [d["id"] for d in first["results"]]  # v1's results kept
        assert "nats-1" in ids  # v2's reducer appended the new ones
    asyncio.run(scenario())
