"""graphmesh: run LangGraph graphs in production on a gRPC mesh."""

__version__ = "0.1.0"
