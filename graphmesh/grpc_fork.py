"""Keeping grpc's fork support off in processes that fork+exec while they hold gRPC.

grpcio >= 1.81, with fork support on, restarts its poller in a forked child; a child that
Popen closes file descriptors in before exec then aborts (epoll_wait EBADF, grpc/grpc#43055).
graphmesh forks+execs while it holds channels and servers: the mesh supervisor (graphmesh up,
a test session, anything that starts graphmesh.mesh.Mesh) spawns services and the embedded
Postgres and NATS with a preexec_fn (die_with_parent), which rules out posix_spawn. So those
processes keep fork support off, unless the user set GRPC_ENABLE_FORK_SUPPORT themselves.

grpc reads the variable when it is imported, so the entry points call
keep_grpc_fork_support_off() first, before anything imports grpc: the CLI
(graphmesh/cli/__init__.py) and tests/conftest.py. Mesh.start and the embedded servers call
it too, so that the processes they start inherit it, and to warn a program that imported grpc
before it. Importing graphmesh changes no environment variable (it used to, in
graphmesh/__init__.py)."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["FORK_SUPPORT_ENV", "keep_grpc_fork_support_off"]

FORK_SUPPORT_ENV = "GRPC_ENABLE_FORK_SUPPORT"

log = logging.getLogger(__name__)
_warned = False


def keep_grpc_fork_support_off() -> None:
    """Sets GRPC_ENABLE_FORK_SUPPORT=false unless it is set. Effective in this process only if
    grpc is not imported yet (then it warns once); child processes inherit it either way."""
    global _warned
    if os.environ.get(FORK_SUPPORT_ENV) is not None:
        return
    os.environ[FORK_SUPPORT_ENV] = "false"
    if "grpc" in sys.modules and not _warned:
        _warned = True
        log.warning("grpc was imported before %s was set: this process forks with grpc's fork support as "
                    "grpc chose (a child may abort, grpc/grpc#43055); set %s=false in the environment, or "
                    "call graphmesh.grpc_fork.keep_grpc_fork_support_off() before importing grpc",
                    FORK_SUPPORT_ENV, FORK_SUPPORT_ENV)
