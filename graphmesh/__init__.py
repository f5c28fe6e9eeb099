"""graphmesh: run LangGraph graphs in production on a gRPC mesh."""

import os

# grpcio >= 1.81 restarts its poller in a forked child when fork support is on; a child that
# Popen closes fds in before exec then aborts (epoll_wait EBADF, grpc/grpc#43055). The mesh
# supervisor spawns services with fork+exec (preexec_fn sets PDEATHSIG) while it holds
# channels, so fork support stays off unless the user asks for it. Set before grpc starts.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
