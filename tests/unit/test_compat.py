"""compat.assess: continue, migrate or refuse, as the workers would decide."""

from __future__ import annotations

from graphmesh.compat import assess
from graphmesh.manifest import parse_manifest
from graphmesh.registry import Registry

V1 = {"name": "g", "version": "1", "path": "m:g", "state_schema_version": "1"}
V2 = {"name": "g", "version": "2", "path": "m:g", "state_schema_version": "2",
      "migrations": [{"from_schema": "1", "rename_nodes": {"a": "b"}}]}
V2_BARE = {"name": "g", "version": "2", "path": "m:g", "state_schema_version": "2"}


def _reg(*entries):
    return Registry(parse_manifest({"graphs": list(entries)}, "t.yaml", "."))


def _assess(reg, run_version="1", run_schema="1", cp_version="1", cp_schema="1"):
    return assess(reg, graph="g", run_version=run_version, run_schema=run_schema,
                  checkpoint_version=cp_version, checkpoint_schema=cp_schema)


def test_same_version_deployed_continues():
    assert _assess(_reg(V1, V2))[:2] == ("continue", "1")


def test_old_version_gone_with_a_path_is_taken_over_and_migrated():
    action, runs_as, detail = _assess(_reg(V2))
    assert (action, runs_as) == ("migrate", "2")
    assert "version 1 is not deployed" in detail and "node a -> b" in detail


def test_new_version_on_an_old_thread_migrates():
    assert _assess(_reg(V1, V2), run_version="2", run_schema="2")[:2] == ("migrate", "2")


def test_no_path_is_refused_and_says_why():
    action, runs_as, detail = _assess(_reg(V2_BARE))
    assert (action, runs_as) == ("refuse", "")
    assert "stay queued" in detail
    action, runs_as, detail = _assess(_reg(V1, V2_BARE), run_version="2", run_schema="2")
    assert (action, runs_as) == ("refuse", "2") and "INCOMPATIBLE_CHECKPOINT" in detail


def test_thread_without_checkpoint_continues_and_unknown_graph_is_refused():
    assert _assess(_reg(V2), run_version="2", run_schema="2", cp_version="", cp_schema="")[0] == "continue"
    assert assess(_reg(V1), graph="other", run_version="1", run_schema="1", checkpoint_version="",
                  checkpoint_schema="")[0] == "refuse"
