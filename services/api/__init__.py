"""services/api: RunService and GraphService, stateless and horizontally scalable."""
