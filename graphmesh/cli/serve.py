"""`graphmesh serve api|worker|review|gateway`: run one service in the foreground, as a container or a
systemd unit does. Configured by GRAPHMESH_* environment variables only (README:
"Configuration"); the process becomes the service (exec), so it receives the signals."""

from __future__ import annotations

import os

SERVICES = ("api", "worker", "review", "gateway")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run one service in the foreground (containers, systemd)")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=run)


def run(args) -> int:
    from graphmesh.mesh import DEFAULT_COMMANDS  # the same command `graphmesh up` runs each service with

    argv = DEFAULT_COMMANDS[args.service]
    os.execv(argv[0], argv)
    return 0  # not reached
