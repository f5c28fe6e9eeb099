"""Moved to graphmesh/routing.py (issue 13); kept only until services/api/runs.py imports it from there."""

from graphmesh.routing import VersionRouter

__all__ = ["VersionRouter"]
