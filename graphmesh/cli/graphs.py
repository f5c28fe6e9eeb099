"""`graphmesh graphs list|show|check|disable-node|enable-node|rollout|rollback`.

Node switches are sent as the operator named by `--as` (env GRAPHMESH_PRINCIPAL, else the OS
user), in the `gm-principal` metadata key, until authentication exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphmesh.cli.args import default_principal
from graphmesh.cli.render import as_json, graph_details, graphs_table
from graphmesh.client import api_client
from graphmesh.rpc.principal import PRINCIPAL_KEY
from graphmesh.v1 import graph_service_pb2 as pb

TIMEOUT = 30.0


def add_parser(subparsers) -> None:
    # --json is accepted after the subcommand too; SUPPRESS keeps it from overwriting `graphmesh --json`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    as_help = "who makes the change (env GRAPHMESH_PRINCIPAL, default: the OS user)"
    graphs = subparsers.add_parser("graphs", help="inspect graphs, roll versions out and back, disable and enable nodes").add_subparsers(
        dest="graphs_command", required=True)

    ls = graphs.add_parser("list", help="the registered graphs, their versions and disabled nodes", parents=[common])
    ls.set_defaults(func=list_graphs)

    show = graphs.add_parser("show", help="one graph: versions, nodes and disabled nodes", parents=[common])
    show.add_argument("graph")
    show.set_defaults(func=show_graph)

    check = graphs.add_parser("check", help="load every graph of a manifest here, as a worker would, and report "
                                            "what does not load (exit 1); starts nothing", parents=[common])
    check.add_argument("--config", type=Path, default=None,
                       help="graphmesh.yaml or langgraph.json (default: as `graphmesh up` finds it)")
    check.set_defaults(func=check_graphs)

    disable = graphs.add_parser("disable-node", help="pause runs before a node until it is enabled again",
                                parents=[common])
    disable.add_argument("graph")
    disable.add_argument("node")
    disable.add_argument("--reason", required=True, help="what paused runs and operators will read")
    disable.add_argument("--as", dest="principal", default=None, help=as_help)
    disable.set_defaults(func=disable_node)

    enable = graphs.add_parser("enable-node", help="enable a disabled node (then `runs resume` its paused runs)",
                               parents=[common])
    enable.add_argument("graph")
    enable.add_argument("node")
    enable.add_argument("--as", dest="principal", default=None, help=as_help)
    enable.set_defaults(func=enable_node)

    rollout = graphs.add_parser("rollout", help="split new runs between versions (stable per thread)",
                                parents=[common])
    rollout.add_argument("graph")
    rollout.add_argument("weights", nargs="+", metavar="VERSION=PERCENT", help="e.g. 1=90 2=10 (sum 100)")
    rollout.add_argument("--reason", required=True, help="recorded with the rollout")
    rollout.add_argument("--as", dest="principal", default=None, help=as_help)
    rollout.set_defaults(func=set_rollout)

    rollback = graphs.add_parser("rollback", help="send all new runs to the previous version at once",
                                 parents=[common])
    rollback.add_argument("graph")
    rollback.add_argument("--reason", required=True, help="recorded with the rollback")
    rollback.add_argument("--as", dest="principal", default=None, help=as_help)
    rollback.set_defaults(func=rollback_graph)


def _metadata(args) -> list[tuple[str, str]]:
    return [(PRINCIPAL_KEY, args.principal or default_principal())]


def list_graphs(args) -> int:
    response = api_client(args.api).graphs.ListGraphs(pb.ListGraphsRequest(), timeout=TIMEOUT)
    if args.json:
        print(as_json(response))
    elif response.graphs:
        print(graphs_table(response.graphs))
    else:
        print("no graphs")
    return 0


def show_graph(args) -> int:
    graph = api_client(args.api).graphs.GetGraph(pb.GetGraphRequest(graph=args.graph), timeout=TIMEOUT).graph
    print(as_json(graph) if args.json else graph_details(graph))
    return 0


def disable_node(args) -> int:
    graph = api_client(args.api).graphs.DisableNode(
        pb.DisableNodeRequest(graph=args.graph, node=args.node, reason=args.reason),
        timeout=TIMEOUT, metadata=_metadata(args)).graph
    print(as_json(graph) if args.json else graph_details(graph))
    return 0


def enable_node(args) -> int:
    graph = api_client(args.api).graphs.EnableNode(
        pb.EnableNodeRequest(graph=args.graph, node=args.node), timeout=TIMEOUT, metadata=_metadata(args)).graph
    print(as_json(graph) if args.json else graph_details(graph))
    return 0


def _weights(items: list[str]) -> dict[str, int]:
    weights = {}
    for item in items:
        version, _, percent = item.partition("=")
        if not version or not percent.isdigit():
            raise SystemExit(f"error: weights are VERSION=PERCENT, got {item!r}")
        weights[version] = int(percent)
    return weights


def set_rollout(args) -> int:
    graph = api_client(args.api).graphs.SetRollout(
        pb.SetRolloutRequest(graph=args.graph, weights=_weights(args.weights), reason=args.reason),
        timeout=TIMEOUT, metadata=_metadata(args)).graph
    print(as_json(graph) if args.json else graph_details(graph))
    return 0


def rollback_graph(args) -> int:
    graph = api_client(args.api).graphs.RollbackGraph(
        pb.RollbackGraphRequest(graph=args.graph, reason=args.reason), timeout=TIMEOUT,
        metadata=_metadata(args)).graph
    print(as_json(graph) if args.json else graph_details(graph))
    return 0


def check_graphs(args) -> int:
    from graphmesh.preflight import check
    from graphmesh.project import locate_manifest

    report = check(args.config or locate_manifest())
    if args.json:
        print(json.dumps({"manifest": report.manifest, "graphs": report.graphs, "errors": report.errors,
                          "notices": report.notices}, indent=2))
    else:
        print(f"manifest {report.manifest}")
        for line in report.lines():
            print(f"  {line}")
    return 0 if report.ok else 1
