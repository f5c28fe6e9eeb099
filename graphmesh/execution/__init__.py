"""Executing runs: shared by workers (queued runs) and the api (synchronous runs)."""

from graphmesh.execution.executor import RunExecutor

__all__ = ["RunExecutor"]
