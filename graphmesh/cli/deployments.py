"""`graphmesh deployments [list] | use NAME | forget NAME`: the meshes `graphmesh up` recorded.

Each `up` records its deployment (api and review address, token) in the CLI config, keyed
by its data directory, and makes it current; the CLI talks to the current one unless
--api / GRAPHMESH_API / --deployment / GRAPHMESH_DEPLOYMENT say otherwise."""

from __future__ import annotations

import argparse
import json
import os

from graphmesh.cli.render import table
from graphmesh.client import (
    ConfigError,
    config_path,
    editing_cli_config,
    load_cli_config,
    resolve_target,
    token_label,
)


def add_parser(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    group = subparsers.add_parser("deployments", parents=[common],
                                  help="the meshes `graphmesh up` recorded; which one the CLI talks to")
    group.set_defaults(func=list_deployments)
    sub = group.add_subparsers(dest="deployments_command")
    ls = sub.add_parser("list", help="every recorded deployment; * marks the current one", parents=[common])
    ls.set_defaults(func=list_deployments)
    use = sub.add_parser("use", help="make NAME the current deployment", parents=[common])
    use.add_argument("name")
    use.set_defaults(func=use_deployment)
    forget = sub.add_parser("forget", help="remove NAME's record (its mesh and data are left alone)",
                            parents=[common])
    forget.add_argument("name")
    forget.set_defaults(func=forget_deployment)


def _entry(d, current: bool) -> dict:
    return {"name": d.name, "current": current, "api": d.api, "review": d.review, "auth": d.auth or "unknown",
            "token": token_label(d.token) if d.token else "", "data_dir": "" if d.key.startswith("legacy:") else d.key,
            "updated_at": d.updated_at}


def list_deployments(args) -> int:
    path = config_path()
    config = load_cli_config(path)
    items = sorted(config.deployments.values(), key=lambda d: d.updated_at, reverse=True)
    entries = [_entry(d, d.key == config.current) for d in items]
    try:
        target = resolve_target(config, api_flag=args.api, deployment_flag=args.deployment)
        now = {"api": target.api, "source": target.api_source,
               "deployment": target.deployment.name if target.deployment else ""}
    except ConfigError as err:
        now = {"error": str(err)}
    if args.json:
        print(json.dumps({"config": str(path), "deployments": entries, "cli_uses": now}, sort_keys=True))
        return 0
    if not entries:
        print(f"no deployments recorded in {path}; `graphmesh up` records one")
    else:
        rows = [["*" if e["current"] else "", e["name"], e["api"], e["review"] or "-", e["auth"],
                 e["data_dir"] or "-", e["updated_at"] or "-"] for e in entries]
        print(table(["", "NAME", "API", "REVIEW", "AUTH", "DATA DIR", "STARTED"], rows))
        print(f"(recorded in {path})")
    if "error" in now:
        print(f"the CLI cannot pick an address: {now['error']}")
    else:
        label = f" = deployment {now['deployment']}" if now["deployment"] else " (no recorded deployment)"
        print(f"the CLI talks to {now['api']}{label}, from {now['source']}")
        overridden = [v for v in ("GRAPHMESH_API", "GRAPHMESH_TOKEN", "GRAPHMESH_DEPLOYMENT") if os.environ.get(v)]
        if overridden:
            print(f"set in the environment: {', '.join(overridden)}")
    return 0


def use_deployment(args) -> int:
    path = config_path()
    with editing_cli_config(path) as config:
        found = config.use(args.name)
    if args.json:
        print(json.dumps(_entry(found, True), sort_keys=True))
    else:
        print(f"the CLI now talks to deployment {found.name} at {found.api} (unless --api, GRAPHMESH_API, "
              f"--deployment or GRAPHMESH_DEPLOYMENT say otherwise)")
    return 0


def forget_deployment(args) -> int:
    path = config_path()
    with editing_cli_config(path) as config:
        gone = config.forget(args.name)
        current = config.current_deployment()
    if args.json:
        print(json.dumps({"forgotten": gone.name, "current": current.name if current else ""}, sort_keys=True))
    else:
        print(f"forgot deployment {gone.name} ({gone.api}); its data directory is untouched"
              + (f"; current: {current.name}" if current else "; no deployment recorded now"))
    return 0
