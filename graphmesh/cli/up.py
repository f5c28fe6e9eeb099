"""`graphmesh up`: run Postgres, NATS, api, review and workers on this machine until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# The port `langgraph dev` serves on: clients written against it find graphmesh there.
GATEWAY_PORT = 2024


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("up", help="run a whole mesh locally (embedded Postgres and NATS)")
    p.add_argument("--data-dir", type=Path, default=Path(".graphmesh"), help="state and logs (default ./.graphmesh)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-port", type=int, default=50051, help="0 = any free port")
    p.add_argument("--review-port", type=int, default=50052, help="0 = any free port")
    p.add_argument("--review-web-port", type=int, default=50053,
                   help="the review page (HTTP; 0 = any free port, -1 = not served)")
    p.add_argument("--gateway-port", type=int, default=None,
                   help=f"the LangGraph HTTP API (langgraph-sdk, RemoteGraph, agent-chat-ui): default {GATEWAY_PORT}, "
                        "the port `langgraph dev` uses (a free port when it is taken, or when --api-port is not "
                        "the default: a second mesh does not contend for it); 0 = any free port, -1 = not served")
    p.add_argument("--gateway-replicas", type=int, default=1,
                   help="gateway processes; the first on --gateway-port, the others each on a free port")
    p.add_argument("--worker-base-port", type=int, default=50061, help="worker-1 listens here, worker-2 on the next port, ...; 0 = free ports")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--api-replicas", type=int, default=1,
                   help="api processes; more than one share --api-port (SO_REUSEPORT: connections are spread "
                        "over them) and each also listens on a port of its own")
    p.add_argument("--worker-concurrency", type=int, default=8)
    p.add_argument("--config", type=Path, default=None, help="graph manifest (default: graphmesh.yaml)")
    p.add_argument("--name", default=None,
                   help="the deployment's name in the CLI config (default: from the data directory; "
                        "see `graphmesh deployments`)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--auth", choices=["token", "none"], default=os.environ.get("GRAPHMESH_AUTH", "token"),
                   help="token (default): every call needs a bearer token, and a local admin token is made; "
                        "none: no authentication (development only)")
    p.add_argument("--demo", action=argparse.BooleanOptionalAction, default=False,
                   help="run the demo against the api once the mesh is up")
    p.add_argument("--exit-after-demo", action="store_true", help="run the demo, then stop the mesh and exit")
    p.add_argument("--supervise", action=argparse.BooleanOptionalAction, default=True,
                   help="restart services, Postgres and NATS when they die, with backoff (default: on; "
                        "--no-supervise leaves that to a supervisor of your own)")
    p.add_argument("--webhook-local-targets", action=argparse.BooleanOptionalAction, default=True,
                   help="let run webhooks reach loopback and private addresses on any port, where a local "
                        "receiver runs (default: on, for development; --no-webhook-local-targets applies the "
                        "production outbound policy, docs/webhooks.md)")
    p.set_defaults(func=run)


def _config(args):
    from graphmesh.mesh import MeshConfig

    # External servers from the environment: then we start no Postgres/NATS of our own.
    return MeshConfig(
        data_dir=Path(args.data_dir).absolute(),
        host=args.host,
        api_port=args.api_port,
        review_port=args.review_port,
        review_web_port=None if args.review_web_port < 0 else args.review_web_port,
        gateway_port=_gateway_port(args),
        gateway_replicas=getattr(args, "gateway_replicas", 1),
        worker_base_port=args.worker_base_port,
        workers=args.workers,
        api_replicas=args.api_replicas,
        worker_concurrency=args.worker_concurrency,
        database_url=os.environ.get("GRAPHMESH_DATABASE_URL") or None,
        nats_url=os.environ.get("GRAPHMESH_NATS_URL") or None,
        manifest=args.config,
        log_level=args.log_level,
        auth=args.auth,
        supervise=getattr(args, "supervise", True),
        webhook_local_targets=getattr(args, "webhook_local_targets", True),
    )


def _gateway_port(args) -> int | None:
    """The gateway's port: -1 none; by default 2024, falling back to a free port when taken
    (another `langgraph dev` or mesh), and a free port for a mesh whose api is not on the
    default port; a port asked for explicitly must be free."""
    port = getattr(args, "gateway_port", None)
    if port is not None:
        return None if port < 0 else port
    port = GATEWAY_PORT if args.api_port == 50051 else 0
    if port:
        from graphmesh.embedded import port_open

        if port_open(args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1", port):
            print(f"  port {port} is taken: the LangGraph HTTP API gateway gets a free port instead "
                  "(--gateway-port to choose)", flush=True)
            return 0
    return port


def redact(url: str) -> str:
    """The URL without its password (or bare token, as NATS URLs carry one), for printing."""
    parts = urlsplit(url)
    if parts.password is None and (parts.username is None or parts.scheme != "nats"):
        return url
    user = "***" if parts.password is None else f"{parts.username}:***"
    netloc = f"{user}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _table(mesh) -> str:
    pg = "(external)" if mesh.postgres is None else f"(embedded, data {mesh.postgres.data_dir})"
    nats = "(external)" if mesh.nats is None else f"(embedded, store {mesh.nats.store_dir})"
    rows = [
        ("postgres", f"{redact(mesh.database_url)}  {pg}"),
        ("nats", f"{redact(mesh.nats_url)}  {nats}"),
    ]
    if len(mesh.api_replica_names) > 1:
        rows.append(("api address", f"{mesh.api_address}  (shared by {', '.join(mesh.api_replica_names)})"))
    for name in mesh.service_names:
        metrics = mesh.metrics_url(name)
        rows.append((name, mesh.address(name) + (f"  metrics {metrics}" if metrics else "")))
        if name == "review" and mesh.review_page_url:
            rows.append(("review page", mesh.review_page_url))
    for name, url in zip(mesh.gateway_names, mesh.gateway_urls):
        rows.append((f"{name} url", f"{url}  (LangGraph HTTP API)"))
    rows.append(("logs", str(mesh.log_dir)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _restarts(mesh) -> str:
    counts = {name: n for name, n in mesh.restarts.items() if n}
    if not counts:
        return "restarts: none"
    return "restarts: " + ", ".join(f"{name} {n}" for name, n in counts.items())


def _run_demo(mesh, *, approve: bool) -> None:
    from graphmesh.cli.demo import run_demo  # imported only when asked for

    run_demo(mesh.api_address, review_address=mesh.review_address, review_page_url=mesh.review_page_url,
             approve=approve)


def _admin_token(mesh) -> str:
    """The local admin token: kept in <data-dir>/admin-token (owner-only), created on the
    first `up` of a data directory and reused afterwards."""
    path = mesh.data_dir / "admin-token"
    token = path.read_text().strip() if path.is_file() else ""
    if not token or not mesh.token_is_active(token):
        _, token = mesh.create_token("local-admin", ["admin"])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return token


def _check_name(args) -> None:
    """Refuses, before anything starts, a --name that another data directory's deployment has."""
    if not args.name:
        return
    from graphmesh.client import load_cli_config

    load_cli_config().check_name(args.name, str(Path(args.data_dir).absolute()))


def _record(mesh, args, token: str) -> None:
    """Records this mesh in the CLI config (other deployments' records stay as they are),
    makes it current, and says how to reach it."""
    from graphmesh.client import DEFAULT_API, TokenChoice, connect_address, record_deployment, use_token

    api = connect_address(mesh.config.host, mesh.api_address.rpartition(":")[2])
    review = connect_address(mesh.config.host, mesh.address("review").rpartition(":")[2])
    config, deployment = record_deployment(data_dir=mesh.data_dir, api=api, review=review, token=token,
                                           auth=mesh.config.auth, name=args.name)
    if token:
        use_token(TokenChoice(token, f"the admin token of this mesh ({mesh.data_dir / 'admin-token'})"))
        path = mesh.data_dir / "admin-token"
        print(f"  admin token in {path} (also in the CLI config {config}); other clients send it as\n"
              f"  'authorization: Bearer <token>' metadata, or: export GRAPHMESH_TOKEN=$(cat {path})", flush=True)
    if mesh.review_page_url:
        print(f"  review page {mesh.review_page_url}: sign in with "
              + (f"the admin token ({mesh.data_dir / 'admin-token'})" if token else "any name (auth is off)"),
              flush=True)
    where = "" if api == DEFAULT_API else f" at {api}"
    print(f"  recorded as deployment '{deployment.name}' in {config}: `graphmesh runs list` talks to this mesh{where}\n"
          f"  until another `up` starts; `graphmesh --deployment {deployment.name} ...` always does "
          f"(`graphmesh deployments` lists them)", flush=True)
    if mesh.gateway_url:
        print(_gateway_help(mesh.gateway_url, token), flush=True)
    local = "loopback and private targets on any port allowed (development; --no-webhook-local-targets " \
        "for the production policy)" if mesh.config.webhook_local_targets else "production outbound policy"
    print(f"  webhooks signed with the secret in {mesh.data_dir / 'webhook-secret'}; {local}", flush=True)


def _gateway_help(url: str, token: str) -> str:
    """How existing LangGraph clients reach this mesh (docs/langgraph-api.md)."""
    key = ', api_key="<admin token>"' if token else ""
    ui_key = "the admin token as its LangSmith API key" if token else "no API key (auth is off)"
    return (f"  LangGraph HTTP API at {url}: existing LangGraph clients work unchanged, e.g.\n"
            f"    langgraph_sdk.get_client(url=\"{url}\"{key})\n"
            f"    RemoteGraph(\"<graph name>\", url=\"{url}\"{key})\n"
            f"    agent-chat-ui / agent-inbox: deployment URL {url}, {ui_key}")


def run(args) -> int:
    from graphmesh.client import ConfigError
    from graphmesh.mesh import Mesh

    try:
        _check_name(args)
    except ConfigError as e:
        print(f"graphmesh up: {e}", flush=True)
        return 2
    mesh = Mesh(_config(args), report=lambda line: print(f"  {line}", flush=True))
    stop = threading.Event()
    interruptible = True

    def on_signal(signum, _frame):
        # While starting or in the demo, unwind (Mesh.start cleans up after itself);
        # afterwards just wake the main loop so shutdown runs outside the handler.
        if interruptible:
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            print(f"starting graphmesh in {mesh.data_dir} ...", flush=True)
            mesh.start()
            print(f"graphmesh is up:\n{_table(mesh)}", flush=True)
            _record(mesh, args, _admin_token(mesh) if mesh.config.auth == "token" else "")
            if args.demo or args.exit_after_demo:
                _run_demo(mesh, approve=args.exit_after_demo)
            interruptible = False
            if not args.exit_after_demo:
                if mesh.supervising:
                    print("  supervising: a service, Postgres or NATS that dies is restarted (with backoff) "
                          "and reported here", flush=True)
                print("press Ctrl-C to stop", flush=True)
                while not stop.wait(1):  # short waits keep signal handling responsive
                    pass
        except KeyboardInterrupt:
            print("\ninterrupted", flush=True)
        except Exception as e:
            print(f"graphmesh up failed: {e}", flush=True)
            return 1
        finally:
            interruptible = False  # a second Ctrl-C during shutdown must not abort the cleanup
            print("shutting down ...", flush=True)
            if mesh.supervising:
                print(f"  {_restarts(mesh)}", flush=True)
            mesh.stop()
            print("stopped", flush=True)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
