"""`graphmesh compat check`: would this deployment continue, migrate or refuse each stored thread?

Reads Postgres directly (like `graphmesh migrate`) and judges against a manifest, so an
operator can check a new manifest before deploying it. Exits 1 if any thread would be refused.
"""

from __future__ import annotations

import json
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compat", help="checkpoint compatibility of stored threads with a deployment")
    sub = p.add_subparsers(dest="compat_command", required=True)
    check = sub.add_parser("check", help="list resumable threads and whether they continue, migrate or are refused")
    check.add_argument("--database-url", default=os.environ.get("GRAPHMESH_DATABASE_URL"),
                       help="Postgres URL (env GRAPHMESH_DATABASE_URL)")
    check.add_argument("--config", default=None,
                       help="the manifest to judge against (default: GRAPHMESH_CONFIG, else ./graphmesh.yaml)")
    check.set_defaults(func=run_check)


def run_check(args) -> int:
    # Imported here: loading graphs pulls LangGraph and LangChain, which every other
    # command would otherwise pay for at startup (about 0.6 s).
    from graphmesh.compat import review
    from graphmesh.manifest import ManifestError
    from graphmesh.registry import Registry

    if not args.database_url:
        print("error: set --database-url or GRAPHMESH_DATABASE_URL")
        return 2
    try:
        registry = Registry.from_file(args.config) if args.config else Registry.default()
    except ManifestError as exc:
        print(f"error: {exc}")
        return 2
    threads = review(args.database_url, registry)
    refused = [t for t in threads if t.action == "refuse"]
    if args.json:
        print(json.dumps({"manifest": registry.source, "threads": [t.as_dict() for t in threads],
                          "refused": len(refused)}, indent=2))
    else:
        print(f"{len(threads)} resumable thread(s) judged against {registry.source}")
        for t in threads:
            wrote = f"{t.graph}@{t.checkpoint_version or '-'} (schema {t.checkpoint_schema or '-'})"
            print(f"{t.action.upper():8} {t.thread_id}  run {t.run_id} {t.status}  pinned @{t.run_version}  "
                  f"checkpoint by {wrote}  -> {t.detail}")
        counts = {a: sum(t.action == a for t in threads) for a in ("continue", "migrate", "refuse")}
        print(", ".join(f"{n} {a}" for a, n in counts.items()))
    return 1 if refused else 0
