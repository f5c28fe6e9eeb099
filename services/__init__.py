"""graphmesh service processes; each is its own entry point."""
