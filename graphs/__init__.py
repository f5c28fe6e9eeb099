"""Example graphs and the graph registry (manifest parsing, lazy compile, input checks)."""

from graphs.manifest import GraphSpec, Limits, ManifestError, MigrationSpec, NodePolicy, RetrySpec
from graphs.registry import Registry

__all__ = ["Registry", "GraphSpec", "Limits", "NodePolicy", "RetrySpec", "MigrationSpec", "ManifestError"]
