"""`graphmesh migrate`: prepare external Postgres and NATS (schema, checkpoint tables, streams)."""

from __future__ import annotations

import asyncio
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("migrate", help="create the schema and streams on external Postgres/NATS")
    p.add_argument("--database-url", default=os.environ.get("GRAPHMESH_DATABASE_URL"))
    p.add_argument("--nats-url", default=os.environ.get("GRAPHMESH_NATS_URL"))
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.database_url or not args.nats_url:
        print("error: set --database-url/--nats-url or GRAPHMESH_DATABASE_URL/GRAPHMESH_NATS_URL")
        return 2
    from graphmesh.setup import prepare

    asyncio.run(prepare(args.database_url, args.nats_url))
    print("schema, checkpoint tables and streams are ready")
    return 0
