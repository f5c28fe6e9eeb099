"""`graphmesh store put|get|delete|search|namespaces`: long-term memory items (StoreService).

A namespace is written with dots between its labels (`users.alice` is ("users", "alice")):
LangGraph's labels never hold a dot, so the notation is unambiguous."""

from __future__ import annotations

import argparse
import json

from graphmesh.cli.args import json_object, whole_number
from graphmesh.cli.render import as_json, plain_dict, table
from graphmesh.client import channel
from graphmesh.v1 import store_service_pb2 as pb
from graphmesh.v1 import store_service_pb2_grpc

TIMEOUT = 30.0


def _labels(text: str) -> list[str]:
    """`a.b.c` -> ["a", "b", "c"]; "" -> [] (the service refuses empty labels, naming them)."""
    return text.split(".") if text else []


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    store = subparsers.add_parser("store", help="long-term memory: the items graphs keep across threads").add_subparsers(
        dest="store_command", required=True)

    put = store.add_parser("put", help="create or replace an item", parents=[common])
    put.add_argument("namespace", help="labels separated by dots, e.g. users.alice")
    put.add_argument("key")
    put.add_argument("--value", required=True, help="the item as a JSON object (or @file.json)")
    put.add_argument("--ttl", type=float, default=0.0, metavar="MINUTES",
                     help="expire after this many minutes unread (default: the deployment's, none unless set)")
    put.set_defaults(func=put_item)

    get = store.add_parser("get", help="show one item", parents=[common])
    get.add_argument("namespace")
    get.add_argument("key")
    get.add_argument("--no-refresh", action="store_true", help="do not renew the item's time to live")
    get.set_defaults(func=get_item)

    delete = store.add_parser("delete", help="delete an item (no error if it is not there)", parents=[common])
    delete.add_argument("namespace")
    delete.add_argument("key")
    delete.set_defaults(func=delete_item)

    search = store.add_parser("search", help="items under a namespace prefix, newest first", parents=[common])
    search.add_argument("prefix", nargs="?", default="", help="namespace prefix (default: every namespace)")
    search.add_argument("--filter", default=None, help="JSON object: items whose value has these fields equal")
    search.add_argument("--limit", type=whole_number(0), default=10)
    search.add_argument("--offset", type=whole_number(0), default=0)
    search.set_defaults(func=search_items)

    ns = store.add_parser("namespaces", help="list namespaces", parents=[common])
    ns.add_argument("--prefix", default="", help="only namespaces starting with these labels (* matches any)")
    ns.add_argument("--suffix", default="", help="only namespaces ending with these labels")
    ns.add_argument("--max-depth", type=whole_number(0), default=0, help="cut namespaces to this many labels (0: whole)")
    ns.add_argument("--limit", type=whole_number(0), default=100)
    ns.add_argument("--offset", type=whole_number(0), default=0)
    ns.set_defaults(func=list_namespaces)


def _stub(args) -> store_service_pb2_grpc.StoreServiceStub:
    return store_service_pb2_grpc.StoreServiceStub(channel(args.api))


def item_details(item) -> str:
    lines = [f"namespace  {'.'.join(item.namespace)}", f"key        {item.key}",
             f"created    {item.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}",
             f"updated    {item.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S}", "value"]
    lines.extend("  " + line for line in json.dumps(plain_dict(item.value), indent=2, sort_keys=True).splitlines())
    return "\n".join(lines)


def put_item(args) -> int:
    request = pb.PutItemRequest(namespace=_labels(args.namespace), key=args.key, ttl_minutes=args.ttl,
                                value=json_object(args.value, "--value"))
    _stub(args).PutItem(request, timeout=TIMEOUT)
    print("{}" if args.json else f"put {args.namespace} {args.key}")
    return 0


def get_item(args) -> int:
    item = _stub(args).GetItem(pb.GetItemRequest(namespace=_labels(args.namespace), key=args.key,
                                                 no_refresh_ttl=args.no_refresh), timeout=TIMEOUT).item
    print(as_json(item) if args.json else item_details(item))
    return 0


def delete_item(args) -> int:
    _stub(args).DeleteItem(pb.DeleteItemRequest(namespace=_labels(args.namespace), key=args.key), timeout=TIMEOUT)
    print("{}" if args.json else f"deleted {args.namespace} {args.key}")
    return 0


def search_items(args) -> int:
    request = pb.SearchItemsRequest(namespace_prefix=_labels(args.prefix), limit=args.limit, offset=args.offset)
    if args.filter is not None:
        request.filter.CopyFrom(json_object(args.filter, "--filter"))
    response = _stub(args).SearchItems(request, timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
    elif not response.items:
        print("no items")
    else:
        rows = [[".".join(i.namespace), i.key, f"{i.updated_at.ToDatetime():%Y-%m-%d %H:%M:%S}",
                 json.dumps(plain_dict(i.value), sort_keys=True, separators=(",", ":"))]
                for i in response.items]
        print(table(["NAMESPACE", "KEY", "UPDATED", "VALUE"], rows))
    return 0


def list_namespaces(args) -> int:
    response = _stub(args).ListNamespaces(pb.ListNamespacesRequest(
        prefix=_labels(args.prefix), suffix=_labels(args.suffix), max_depth=args.max_depth, limit=args.limit,
        offset=args.offset), timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
    elif not response.namespaces:
        print("no namespaces")
    else:
        print("\n".join(".".join(n.path) for n in response.namespaces))
    return 0
