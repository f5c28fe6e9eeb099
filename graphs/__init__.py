"""Example graphs, declared in the bundled manifest graphmesh/examples.yaml. The manifest and registry that
load them (and a user's own project) live in the library: graphmesh/manifest.py and
graphmesh/registry.py."""
