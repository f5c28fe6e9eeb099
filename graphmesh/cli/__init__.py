"""The `graphmesh` command line."""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from graphmesh.cli import (
    approvals,
    certs,
    compat,
    doctor,
    graphs,
    migrate,
    runs,
    threads,
    tokens,
    trace,
    up,
    workers,
)
from graphmesh.rpc.errors import error_code

DEFAULT_API = "127.0.0.1:50051"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphmesh", description="Run LangGraph graphs on a gRPC mesh.")
    parser.add_argument("--api", default=os.environ.get("GRAPHMESH_API", DEFAULT_API),
                        help=f"api address (env GRAPHMESH_API, default {DEFAULT_API})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_parser(sub)
    runs.add_parser(sub)
    approvals.add_parser(sub)
    graphs.add_parser(sub)
    workers.add_parser(sub)
    migrate.add_parser(sub)
    compat.add_parser(sub)
    trace.add_parser(sub)
    doctor.add_parser(sub)
    certs.add_parser(sub)
    tokens.add_parser(sub)
    threads.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except grpc.RpcError as err:
        print(f"error: {err.code().name} ({error_code(err)}): {err.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
