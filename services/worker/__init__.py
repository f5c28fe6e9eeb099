"""services/worker: pulls runs from JetStream and executes them (WorkerService)."""
