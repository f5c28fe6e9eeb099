"""Executing runs: shared by workers (queued runs) and the api (synchronous runs)."""

from graphmesh.execution.executor import RunExecutor, error_proto

__all__ = ["RunExecutor", "error_proto"]
