"""Moved to graphmesh/sync_runs.py (issue 13); kept only until services/api/runs.py imports it from there."""

from graphmesh.sync_runs import SyncRunner

__all__ = ["SyncRunner"]
