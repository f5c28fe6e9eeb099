"""Long-term memory (graphmesh/memory.py, StoreService): items put, read, searched, listed
and deleted over gRPC and the CLI; an item a graph's node writes during a run (through the
store LangGraph injects) read back over gRPC; an item with a time to live that expires, is
no longer returned, and is deleted by a sweep.

A private mesh with one worker, manifest tests/fixtures/memory.yaml (graph in
tests/fixtures/memory_graphs.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import json_format

from graphmesh.client import api_client, channel
from graphmesh.config import Settings
from graphmesh.memory import Memory, open_store
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import store_service_pb2 as pb
from graphmesh.v1 import store_service_pb2_grpc
from helpers import (
    COMPLETED,
    create_run,
    new_thread,
    private_mesh,
    rpc_error,
    struct,
    thread_values,
    wait_for,
    wait_status,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "memory.yaml"
CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]


@pytest.fixture(scope="module")
def smesh():
    with private_mesh("store", manifest=MANIFEST, workers=1) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stores(smesh):
    ch = channel(smesh.api_address)
    yield store_service_pb2_grpc.StoreServiceStub(ch)
    ch.close()


def _ns() -> list[str]:
    """A namespace of this test's own (the mesh's store is shared by the module)."""
    return ["test", uuid.uuid4().hex[:12]]


def _put(stores, namespace, key, value: dict, **fields) -> None:
    stores.PutItem(pb.PutItemRequest(namespace=namespace, key=key, value=struct(value), **fields), timeout=10)


def _get(stores, namespace, key, **fields) -> pb.StoreItem:
    return stores.GetItem(pb.GetItemRequest(namespace=namespace, key=key, **fields), timeout=10).item


def _value(item) -> dict:
    return json_format.MessageToDict(item.value)


def test_put_get_search_list_delete(stores):
    ns = _ns()
    _put(stores, ns, "prefs", {"theme": "dark", "size": 3, "tags": ["a", "b"]})
    _put(stores, ns + ["deep"], "note", {"theme": "light", "size": 1})
    item = _get(stores, ns, "prefs")
    assert (list(item.namespace), item.key) == (ns, "prefs")
    assert _value(item) == {"theme": "dark", "size": 3, "tags": ["a", "b"]}
    assert item.created_at.seconds and item.updated_at.seconds

    _put(stores, ns, "prefs", {"theme": "blue"})  # replaces the whole value
    assert _value(_get(stores, ns, "prefs")) == {"theme": "blue"}

    found = stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns), timeout=10).items
    assert sorted((tuple(i.namespace), i.key) for i in found) == [(tuple(ns), "prefs"), (tuple(ns + ["deep"]), "note")]
    light = stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns, filter=struct({"theme": "light"})),
                               timeout=10).items
    assert [i.key for i in light] == ["note"]
    one = stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns, limit=1), timeout=10).items
    other = stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns, limit=1, offset=1), timeout=10).items
    assert len(one) == len(other) == 1 and one[0].key != other[0].key

    listed = stores.ListNamespaces(pb.ListNamespacesRequest(prefix=ns), timeout=10).namespaces
    assert sorted(tuple(n.path) for n in listed) == [tuple(ns), tuple(ns + ["deep"])]
    cut = stores.ListNamespaces(pb.ListNamespacesRequest(prefix=ns, max_depth=2), timeout=10).namespaces
    assert [tuple(n.path) for n in cut] == [tuple(ns)]
    whole = stores.ListNamespaces(pb.ListNamespacesRequest(prefix=ns, max_depth=2**32 - 1), timeout=10).namespaces
    assert len(whole) == 2
    nested = stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns, filter=struct({"tags": {"$eq": ["x"]}})),
                                timeout=10).items
    assert nested == []
    by_suffix = stores.ListNamespaces(pb.ListNamespacesRequest(prefix=["test"], suffix=["deep"]), timeout=10)
    assert tuple(ns + ["deep"]) in [tuple(n.path) for n in by_suffix.namespaces]

    stores.DeleteItem(pb.DeleteItemRequest(namespace=ns, key="prefs"), timeout=10)
    with rpc_error(grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND"):
        _get(stores, ns, "prefs")
    stores.DeleteItem(pb.DeleteItemRequest(namespace=ns, key="prefs"), timeout=10)  # gone already: no error


@pytest.mark.parametrize("request_, code", [
    (pb.PutItemRequest(namespace=[], key="k", value=struct({"a": 1})), "INVALID_NAMESPACE"),
    (pb.PutItemRequest(namespace=["a.b"], key="k", value=struct({"a": 1})), "INVALID_NAMESPACE"),
    (pb.PutItemRequest(namespace=["a", ""], key="k", value=struct({"a": 1})), "INVALID_NAMESPACE"),
    (pb.PutItemRequest(namespace=["langgraph"], key="k", value=struct({"a": 1})), "INVALID_NAMESPACE"),
    (pb.PutItemRequest(namespace=["a"], key="", value=struct({"a": 1})), "INVALID_KEY"),
    (pb.PutItemRequest(namespace=["a"], key="k"), "INVALID_VALUE"),
    (pb.PutItemRequest(namespace=["a"], key="k", value=struct({"a": 1}), ttl_minutes=-1), "INVALID_TTL"),
    (pb.PutItemRequest(namespace=["a"], key="k", value=struct({"a": 1}), ttl_minutes=1e-9), "INVALID_TTL"),
    (pb.GetItemRequest(namespace=[], key="k"), "INVALID_NAMESPACE"),
    (pb.SearchItemsRequest(namespace_prefix=["x.y"]), "INVALID_NAMESPACE"),
    (pb.SearchItemsRequest(limit=1001), "INVALID_LIMIT"),
    (pb.SearchItemsRequest(filter=struct({"prefs": {"theme": "dark"}})), "INVALID_FILTER"),
    (pb.ListNamespacesRequest(suffix=[""]), "INVALID_NAMESPACE"),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else v)
def test_bad_requests_are_invalid_argument(stores, request_, code):
    method = {pb.PutItemRequest: stores.PutItem, pb.GetItemRequest: stores.GetItem,
              pb.SearchItemsRequest: stores.SearchItems, pb.ListNamespacesRequest: stores.ListNamespaces}
    with rpc_error(grpc.StatusCode.INVALID_ARGUMENT, code):
        method[type(request_)](request_, timeout=10)


def test_a_graph_node_writes_an_item_read_over_grpc(smesh, stores):
    client = api_client(smesh.api_address)
    try:
        user = f"u{uuid.uuid4().hex[:8]}"
        run = create_run(client, "remembering", {"user": user, "key": "fav", "text": "green tea please"},
                         thread_id=new_thread("mem"))
        wait_status(client, run.run_id, COMPLETED)
        # The node that read it back through get_store() saw what the first one wrote.
        assert thread_values(client, run.thread_id)["recalled"] == {"text": "green tea please", "words": 3}
    finally:
        client.close()
    assert _value(_get(stores, ["memories", user], "fav")) == {"text": "green tea please", "words": 3}


def test_an_item_with_a_ttl_expires_and_is_swept(smesh, stores):
    ns = _ns()
    _put(stores, ns, "short", {"v": 1}, ttl_minutes=0.002)  # 120 ms
    _put(stores, ns, "kept", {"v": 2})
    assert _value(_get(stores, ns, "short", no_refresh_ttl=True)) == {"v": 1}

    def expired() -> bool:
        try:
            _get(stores, ns, "short", no_refresh_ttl=True)  # reading without renewing it
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
            return True
        return False

    wait_for(expired, 30, message="the item with a 120 ms time to live to stop being returned")
    assert [i.key for i in stores.SearchItems(pb.SearchItemsRequest(namespace_prefix=ns), timeout=10).items] == \
        ["kept"]

    async def sweep() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(smesh.database_url, autocommit=True) as conn:
            conn.row_factory = psycopg.rows.dict_row
            swept = await Memory(open_store(conn, Settings())).sweep()
            row = await (await conn.execute("SELECT count(*) AS n FROM store WHERE prefix = %s",
                                            (".".join(ns),))).fetchone()
            return swept, row["n"]

    swept, left = asyncio.run(sweep())
    assert swept >= 1 and left == 1  # the expired row is gone, the one without a TTL stays
    assert _value(_get(stores, ns, "kept")) == {"v": 2}


def test_cli_store_commands(smesh):
    def gm(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*CLI, "--api", smesh.api_address, *args], capture_output=True, text=True,
                              timeout=60, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        return done

    ns = ".".join(_ns())
    gm("store", "put", ns, "k1", "--value", '{"n": 2, "s": "x"}')
    gm("store", "put", f"{ns}.sub", "k2", "--value", '{"n": 5}', "--ttl", "60")
    assert json.loads(gm("store", "get", ns, "k1", "--json").stdout)["value"] == {"n": 2, "s": "x"}
    assert '"n": 2' in gm("store", "get", ns, "k1").stdout
    found = json.loads(gm("store", "search", ns, "--filter", '{"n": 5}', "--json").stdout)["items"]
    assert [(i["namespace"], i["key"]) for i in found] == [([*ns.split("."), "sub"], "k2")]
    assert sorted(gm("store", "namespaces", "--prefix", ns).stdout.split()) == [ns, f"{ns}.sub"]
    gm("store", "delete", ns, "k1")
    missing = subprocess.run([*CLI, "--api", smesh.api_address, "store", "get", ns, "k1"], capture_output=True,
                             text=True, timeout=60, cwd=REPO_ROOT)
    assert missing.returncode == 1 and "NOT_FOUND (ITEM_NOT_FOUND)" in missing.stderr
