"""graphmesh: run LangGraph graphs in production on a gRPC mesh."""

# Importing graphmesh changes nothing outside it: grpc's fork support is switched off by the
# entry points that fork while they hold gRPC (graphmesh/grpc_fork.py).

__version__ = "0.1.0"
