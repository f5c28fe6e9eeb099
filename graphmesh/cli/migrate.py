"""`graphmesh migrate`: prepare external Postgres and NATS (schema, checkpoint tables, streams),
and, on a new deployment, its first admin token. Idempotent: a deployment runs it before
every rollout (a Kubernetes Job / Helm hook, a compose service that runs to completion)."""

from __future__ import annotations

import asyncio
import os
import sys

BOOTSTRAP_TOKEN_ENV = "GRAPHMESH_BOOTSTRAP_TOKEN"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("migrate", help="create the schema and streams on external Postgres/NATS "
                                              "(and the first admin token)")
    p.add_argument("--database-url", default=os.environ.get("GRAPHMESH_DATABASE_URL"))
    p.add_argument("--nats-url", default=os.environ.get("GRAPHMESH_NATS_URL"),
                   help="a NATS URL, or a cluster's servers comma-separated")
    p.add_argument("--nats-replicas", type=int, default=None,
                   help="copies of each JetStream stream (default GRAPHMESH_NATS_REPLICAS or 1; 3 on a "
                        "3-node cluster); changing it moves existing streams")
    p.add_argument("--admin", metavar="PRINCIPAL", default=os.environ.get("GRAPHMESH_BOOTSTRAP_ADMIN", ""),
                   help="make sure an admin token exists: with $GRAPHMESH_BOOTSTRAP_TOKEN (e.g. from a Secret) "
                        "that token is registered for PRINCIPAL; else one is made only if no admin token "
                        "exists yet, and printed once (or written to --token-file)")
    p.add_argument("--token-file", default="",
                   help="with --admin: write a token made now to this file (owner-only) instead of stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.database_url or not args.nats_url:
        print("error: set --database-url/--nats-url or GRAPHMESH_DATABASE_URL/GRAPHMESH_NATS_URL", file=sys.stderr)
        return 2
    import dataclasses

    from graphmesh.config import Settings
    from graphmesh.errors import GraphmeshError
    from graphmesh.setup import prepare

    settings = Settings.from_env()
    if args.nats_replicas is not None:
        if args.nats_replicas < 1:
            print("error: --nats-replicas must be at least 1", file=sys.stderr)
            return 2
        settings = dataclasses.replace(settings, nats_replicas=args.nats_replicas)
    try:
        asyncio.run(prepare(args.database_url, args.nats_url, settings=settings))
        print(f"schema, checkpoint tables and streams are ready (stream replicas: {settings.nats_replicas})")
        if args.admin or os.environ.get(BOOTSTRAP_TOKEN_ENV):
            return asyncio.run(_bootstrap(args.database_url, args.admin or "admin", args.token_file))
    except GraphmeshError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


async def _bootstrap(database_url: str, principal: str, token_file: str) -> int:
    from graphmesh.auth.tokens import TokenStore
    from graphmesh.db import make_pool
    from graphmesh.store import RunStore

    async with make_pool(database_url, max_size=2, name="graphmesh-migrate") as pool:
        result = await TokenStore(RunStore(pool)).bootstrap_admin(
            principal, token=os.environ.get(BOOTSTRAP_TOKEN_ENV, ""), created_by="graphmesh migrate")
    if not result.created:
        print(f"admin token {result.token_id} ({result.principal}) exists; none made")
    elif result.token is None:
        print(f"admin token {result.token_id} for {result.principal} registered from ${BOOTSTRAP_TOKEN_ENV}")
    elif token_file:
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(result.token + "\n")
        print(f"admin token {result.token_id} for {result.principal} written to {token_file}")
    else:
        print(f"admin token {result.token_id} for {result.principal} (shown once; keep it in a secret store):")
        print(result.token)
    return 0
