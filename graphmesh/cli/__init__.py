"""The `graphmesh` command line.

Where calls go: `--api`, else GRAPHMESH_API, else a recorded deployment (`--deployment NAME`
/ GRAPHMESH_DEPLOYMENT, else the one `graphmesh up` started last), else 127.0.0.1:50051.
The token goes with the address: `--token`, else GRAPHMESH_TOKEN, else the token of the
recorded deployment that has that address (see graphmesh/client.py and docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import sys

from graphmesh.grpc_fork import keep_grpc_fork_support_off

keep_grpc_fork_support_off()  # before grpc is imported: `graphmesh up` forks while it holds gRPC

import grpc  # noqa: E402

from graphmesh.cli import (
    approvals,
    assistants,
    certs,
    compat,
    deployments,
    doctor,
    graphs,
    migrate,
    runs,
    schedules,
    serve,
    store,
    threads,
    tokens,
    trace,
    up,
    webhooks,
    workers,
)
from graphmesh.client import (
    DEFAULT_API,
    ConfigError,
    Target,
    TokenChoice,
    auth_stub,
    config_path,
    describe_token,
    load_cli_config,
    resolve_target,
    resolve_token,
    use_token,
)
from graphmesh.rpc.errors import error_code
from graphmesh.rpc.principal import PRINCIPAL_KEY

__all__ = ["DEFAULT_API", "build_parser", "main"]

# Commands that talk to no mesh (or, like `up`, to the one they start themselves).
LOCAL_COMMANDS = {"up", "deployments", "certs", "migrate", "compat"}
AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphmesh", description="Run LangGraph graphs on a gRPC mesh.")
    parser.add_argument("--api", default=None,
                        help=f"api address (env GRAPHMESH_API; default: the recorded deployment, else {DEFAULT_API})")
    parser.add_argument("--deployment", "-d", default=None, metavar="NAME",
                        help="a deployment `graphmesh up` recorded (env GRAPHMESH_DEPLOYMENT; "
                             "default: the one started last; see `graphmesh deployments`)")
    parser.add_argument("--token", default=None, metavar="TOKEN|@FILE",
                        help="bearer token (env GRAPHMESH_TOKEN; default: the token recorded with the address)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_parser(sub)
    runs.add_parser(sub)
    schedules.add_parser(sub)
    approvals.add_parser(sub)
    graphs.add_parser(sub)
    workers.add_parser(sub)
    migrate.add_parser(sub)
    serve.add_parser(sub)
    compat.add_parser(sub)
    trace.add_parser(sub)
    doctor.add_parser(sub)
    certs.add_parser(sub)
    webhooks.add_parser(sub)
    tokens.add_parser(sub)
    threads.add_parser(sub)
    assistants.add_parser(sub)
    store.add_parser(sub)
    deployments.add_parser(sub)
    return parser


def _explicit_as(args) -> str | None:
    """The name given with --as (every --as option stores into `principal`, default None;
    `tokens create PRINCIPAL` uses the same name for its positional argument)."""
    if args.command == "tokens":
        return None
    value = getattr(args, "principal", None)
    return value or None


def _check_as(name: str, target: Target, choice: TokenChoice) -> None:
    """--as only names the caller on a mesh without authentication. With a token, the
    mesh acts as the token's principal: say so instead of silently acting as someone else.
    (WhoAmI answers with the --as name on a development mesh, which ignores tokens.)"""
    me = auth_stub(target.api).WhoAmI(_whoami_request(), metadata=((PRINCIPAL_KEY, name),), timeout=15)
    if me.principal == name:
        return
    raise ConfigError(
        f"--as {name} cannot be used with authentication on: the mesh at {target.api} acts as the "
        f"principal of the token the CLI sends ({me.principal}; {describe_token(choice)}), never as a name "
        f"the caller claims. To act as {name}, send a token issued to {name} "
        f"(`graphmesh tokens create {name} --role ...`, then --token or GRAPHMESH_TOKEN), and drop --as.")


def _whoami_request():
    from graphmesh.v1 import auth_service_pb2

    return auth_service_pb2.WhoAmIRequest()


def _auth_hint(err: grpc.RpcError, target: Target, choice: TokenChoice, as_name: str | None) -> list[str]:
    lines = [f"  the CLI sent {describe_token(choice)} to {target.api} (address from {target.api_source})"]
    if err.code() == grpc.StatusCode.UNAUTHENTICATED:
        if not choice.token:
            lines.append("  pass --token TOKEN|@FILE or set GRAPHMESH_TOKEN, or pick a recorded mesh with "
                         "--deployment NAME (`graphmesh deployments` lists them)")
        elif choice.source in ("GRAPHMESH_TOKEN", "--token") and target.deployment is not None \
                and target.deployment.token and target.deployment.token != choice.token:
            lines.append(f"  deployment {target.deployment.name} records another token; unset GRAPHMESH_TOKEN "
                         f"(and drop --token) to use it")
        if as_name:
            lines.append(f"  --as {as_name} names the caller only on a mesh started with --auth none; "
                         f"with authentication on, send a token issued to {as_name}")
    return lines


def _stdout_closed() -> int:
    """The reader of our output went away (`graphmesh runs list | head -1`): stop quietly,
    as Unix tools do. stdout now points at /dev/null so that the interpreter's final flush
    of what is still buffered cannot raise again; 141 = 128 + SIGPIPE, as a shell reports
    a command that a closed pipe stopped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (tests capturing it)
        pass
    finally:
        os.close(devnull)
    return 141


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target: Target | None = None
    choice = TokenChoice("", "")
    as_name = _explicit_as(args)
    try:
        if args.command not in LOCAL_COMMANDS:
            config = load_cli_config()
            target = resolve_target(config, api_flag=args.api, deployment_flag=args.deployment,
                                    review_flag=getattr(args, "review", None))
            choice = resolve_token(target, token_flag=args.token, path=config_path())
            use_token(choice)  # every channel of this command: api, review, workers
            args.api = target.api
            if hasattr(args, "review"):
                args.review = target.review
            if as_name and choice.token:
                _check_as(as_name, target, choice)
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside main, not at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except grpc.RpcError as err:
        print(f"error: {err.code().name} ({error_code(err)}): {err.details()}", file=sys.stderr)
        if err.code() in AUTH_CODES and target is not None:
            print("\n".join(_auth_hint(err, target, choice, as_name)), file=sys.stderr)
        elif err.code() == grpc.StatusCode.UNAVAILABLE and target is not None:
            where = (f"review {target.review} (from {target.review_source})" if hasattr(args, "review")
                     else f"api {target.api} (from {target.api_source})")
            print(f"  the CLI called {where}; `graphmesh deployments` lists the recorded meshes",
                  file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
