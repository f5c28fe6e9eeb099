"""Typed settings, read once from GRAPHMESH_* environment variables and passed explicitly."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(f"GRAPHMESH_{name}", default)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a graphmesh process needs to find its dependencies and tune itself."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/graphmesh"
    nats_url: str = "nats://127.0.0.1:4222"
    # Graph manifest; empty lets the registry find graphmesh.yaml.
    config_path: str = ""
    listen: str = "127.0.0.1:0"
    log_level: str = "INFO"
    worker_id: str = field(default_factory=lambda: f"worker-{socket.gethostname()}-{os.getpid()}")
    # Runs one worker executes at once.
    worker_concurrency: int = 8
    # A run's lease in Postgres; renewed every lease_seconds / 3 while it executes.
    lease_seconds: float = 15.0
    # JetStream redelivers a job whose worker stopped acking for this long.
    ack_wait_seconds: float = 30.0
    # Per-process database connections.
    db_pool_size: int = 20
    # How long a call waits for a database connection before answering UNAVAILABLE.
    db_timeout_seconds: float = 5.0
    # Every reconcile_seconds, runs that should progress but have no live lease are re-published.
    reconcile_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> "Settings":
        defaults = cls()
        return cls(
            database_url=_env("DATABASE_URL", defaults.database_url),
            nats_url=_env("NATS_URL", defaults.nats_url),
            config_path=_env("CONFIG", ""),
            listen=_env("LISTEN", defaults.listen),
            log_level=_env("LOG_LEVEL", defaults.log_level),
            worker_id=_env("WORKER_ID", defaults.worker_id),
            worker_concurrency=int(_env("WORKER_CONCURRENCY", str(defaults.worker_concurrency))),
            lease_seconds=float(_env("LEASE_SECONDS", str(defaults.lease_seconds))),
            ack_wait_seconds=float(_env("ACK_WAIT_SECONDS", str(defaults.ack_wait_seconds))),
            db_pool_size=int(_env("DB_POOL_SIZE", str(defaults.db_pool_size))),
            db_timeout_seconds=float(_env("DB_TIMEOUT_SECONDS", str(defaults.db_timeout_seconds))),
            reconcile_seconds=float(_env("RECONCILE_SECONDS", str(defaults.reconcile_seconds))),
        )
