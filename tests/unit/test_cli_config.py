"""The CLI config (recorded deployments), address and token selection, token descriptions:
pure logic of graphmesh/client.py, no mesh."""

from __future__ import annotations

import json
import os
import stat

import pytest

from graphmesh.client import (
    DEFAULT_API,
    CliConfig,
    ConfigError,
    TokenChoice,
    default_name,
    describe_token,
    load_cli_config,
    record_deployment,
    resolve_target,
    resolve_token,
    same_address,
    token_for,
    token_label,
)

TOKEN_A = "gm_aaaaaaaaaaaa_" + "s" * 43
TOKEN_B = "gm_bbbbbbbbbbbb_" + "t" * 43


def two() -> CliConfig:
    c = CliConfig()
    c.record(key="/m/a/.graphmesh", api="127.0.0.1:6001", review="127.0.0.1:6002", token=TOKEN_A, auth="token",
             now="2024-01-01T00:00:00+00:00")
    c.record(key="/m/b", api="127.0.0.1:7001", review="127.0.0.1:7002", token=TOKEN_B, auth="token",
             now="2024-01-02T00:00:00+00:00")
    return c


def test_names_come_from_the_data_dir_and_stay_unique():
    assert default_name("/home/u/proj/.graphmesh") == "proj"
    assert default_name("/tmp/mesh b") == "mesh-b"
    c = CliConfig()
    first = c.record(key="/x/one/.graphmesh", api="h:1")
    second = c.record(key="/y/one/.graphmesh", api="h:2")
    assert (first.name, second.name) == ("one", "one-2")
    # the same data dir again: same record, same name, new address
    again = c.record(key="/x/one/.graphmesh", api="h:3")
    assert again.name == "one" and len(c.deployments) == 2 and c.deployments["/x/one/.graphmesh"].api == "h:3"


def test_an_explicit_name_taken_by_another_data_dir_is_refused():
    c = two()
    with pytest.raises(ConfigError, match="already used by /m/b"):
        c.record(key="/m/c", api="h:9", name="b")
    assert c.record(key="/m/b", api="h:9", name="b").name == "b"  # its own name is fine


def test_two_records_keep_each_other_and_the_last_is_current():
    c = two()
    assert {d.name: d.token for d in c.deployments.values()} == {"a": TOKEN_A, "b": TOKEN_B}
    assert c.current_deployment().name == "b"
    round_trip = CliConfig.from_json(json.loads(json.dumps(c.to_json())))
    assert round_trip == c


def test_the_old_single_entry_file_still_reads():
    old = CliConfig.from_json({"api": "127.0.0.1:50051", "token": TOKEN_A})
    d = old.current_deployment()
    assert (d.name, d.api, d.token) == ("default", "127.0.0.1:50051", TOKEN_A)
    assert resolve_token(resolve_target(old, environ={}), environ={}).token == TOKEN_A
    # `up` on that address replaces the old record; another address keeps it
    old.record(key="/m/x", api="127.0.0.1:50051", token=TOKEN_B)
    assert [d.name for d in old.deployments.values()] == ["x"]
    kept = CliConfig.from_json({"api": "127.0.0.1:50051", "token": TOKEN_A})
    kept.record(key="/m/y", api="127.0.0.1:6001", token=TOKEN_B)
    assert sorted(d.name for d in kept.deployments.values()) == ["default", "y"]


def test_the_new_file_mirrors_the_current_deployment_for_older_clis():
    data = two().to_json()
    assert (data["api"], data["token"]) == ("127.0.0.1:7001", TOKEN_B)


def test_the_address_order_flag_env_deployment_current_default():
    c = two()
    assert resolve_target(c, environ={}).api == "127.0.0.1:7001"  # the current one
    assert resolve_target(c, environ={"GRAPHMESH_DEPLOYMENT": "a"}).api == "127.0.0.1:6001"
    assert resolve_target(c, deployment_flag="a", environ={"GRAPHMESH_DEPLOYMENT": "b"}).api == "127.0.0.1:6001"
    assert resolve_target(c, environ={"GRAPHMESH_API": "10.0.0.1:1"}).api == "10.0.0.1:1"
    assert resolve_target(c, api_flag="10.0.0.2:2", environ={"GRAPHMESH_API": "10.0.0.1:1"}).api == "10.0.0.2:2"
    assert resolve_target(CliConfig(), environ={}).api == DEFAULT_API
    t = resolve_target(c, environ={})
    assert (t.review, t.deployment.name) == ("127.0.0.1:7002", "b")
    assert resolve_target(c, review_flag="r:1", environ={}).review == "r:1"


def test_a_named_deployment_that_contradicts_the_address_is_an_error():
    c = two()
    with pytest.raises(ConfigError, match="127.0.0.1:6001"):
        resolve_target(c, deployment_flag="a", environ={"GRAPHMESH_API": "127.0.0.1:7001"})
    with pytest.raises(ConfigError, match="no deployment named 'zz'"):
        resolve_target(c, deployment_flag="zz", environ={})
    # the same address spelled another way is no contradiction
    assert resolve_target(c, deployment_flag="a", api_flag="localhost:6001", environ={}).deployment.name == "a"


def test_the_token_goes_with_the_address(tmp_path):
    c = two()
    path = tmp_path / "c.json"
    a = resolve_token(resolve_target(c, api_flag="localhost:6001", environ={}), environ={}, path=path)
    assert a.token == TOKEN_A and a.source == f"the CLI config {path}, deployment a"
    # an address no deployment has gets no token, not the current deployment's
    none = resolve_token(resolve_target(c, api_flag="10.9.9.9:6001", environ={}), environ={}, path=path)
    assert none.token == "" and "10.9.9.9:6001" in none.source
    env = resolve_token(resolve_target(c, environ={}), environ={"GRAPHMESH_TOKEN": "x.y.z"}, path=path)
    assert (env.token, env.source) == ("x.y.z", "GRAPHMESH_TOKEN")
    flag = resolve_token(resolve_target(c, environ={}), token_flag="gm_f", environ={"GRAPHMESH_TOKEN": "e"})
    assert (flag.token, flag.source) == ("gm_f", "--token")
    (tmp_path / "tok").write_text(TOKEN_A + "\n")
    from_file = resolve_token(resolve_target(c, environ={}), token_flag=f"@{tmp_path / 'tok'}", environ={})
    assert from_file.token == TOKEN_A and from_file.source.startswith("--token @")


def test_channels_pick_the_token_of_their_address(tmp_path):
    c = two()
    assert token_for("127.0.0.1:6002", environ={}, config=c).token == TOKEN_A  # a's review address
    assert token_for("127.0.0.1:7001", environ={}, config=c).token == TOKEN_B
    assert token_for("127.0.0.1:9999", environ={}, config=c).token == ""
    assert token_for(None, environ={}, config=c).token == TOKEN_B  # no address: the current one


def test_token_descriptions_never_show_the_secret():
    text = describe_token(TokenChoice(TOKEN_A, "GRAPHMESH_TOKEN"))
    assert text.startswith("token 'gm_aaaaaaaaaaaa_…' (sha256 ") and text.endswith("from GRAPHMESH_TOKEN")
    assert "sss" not in text
    jwt = "eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert "eyJzdWIi" not in token_label(jwt) and token_label(jwt) != token_label(jwt + "x")
    assert describe_token(TokenChoice("", "no deployment recorded in /c has address h:1")) == \
        "no token (no deployment recorded in /c has address h:1)"


def test_same_address():
    assert same_address("127.0.0.1:1", "localhost:1") and same_address("0.0.0.0:1", "127.0.0.1:1")
    assert not same_address("127.0.0.1:1", "127.0.0.1:2")
    assert not same_address("10.0.0.1:1", "127.0.0.1:1")


def test_use_and_forget():
    c = two()
    assert c.use("a").name == "a" and c.current_deployment().name == "a"
    c.forget("a")
    assert c.current_deployment().name == "b" and list(c.deployments) == ["/m/b"]
    with pytest.raises(ConfigError):
        c.use("a")


def test_records_on_disk_are_owner_only_and_merge(tmp_path):
    path = tmp_path / "sub" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"api": "127.0.0.1:50051", "token": TOKEN_A}))  # an old file
    record_deployment(data_dir=tmp_path / "one", api="127.0.0.1:6001", token=TOKEN_B, auth="token", path=path)
    record_deployment(data_dir=tmp_path / "two", api="127.0.0.1:6101", auth="none", path=path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    c = load_cli_config(path)
    assert sorted(d.name for d in c.deployments.values()) == ["default", "one", "two"]
    assert c.current_deployment().name == "two"
    assert load_cli_config(tmp_path / "missing.json") == CliConfig()
    (tmp_path / "bad.json").write_text("{not json")
    assert load_cli_config(tmp_path / "bad.json") == CliConfig()


def test_the_cli_starts_without_loading_graphs():
    """Every CLI call is a process: LangGraph and LangChain (about 0.6 s of imports) load only
    for the commands that load graphs, not for `runs get` or `--help`."""
    import subprocess
    import sys

    probe = "import sys, graphmesh.cli; print(sorted(m for m in ('langgraph', 'langchain_core') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
