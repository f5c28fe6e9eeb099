"""Typed settings, read once from GRAPHMESH_* environment variables and passed explicitly."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Mapping

# The manifest a process serves (a path); graphmesh.mesh sets it for the processes it starts.
MANIFEST_ENV = "GRAPHMESH_CONFIG"


def _env(environ: Mapping[str, str], name: str, default: str) -> str:
    return environ.get(f"GRAPHMESH_{name}", default)


def manifest_from_env(environ: Mapping[str, str] | None = None) -> str:
    """GRAPHMESH_CONFIG, the manifest to serve, or "" (then graphmesh.project.locate_manifest
    looks in the working directory). The one place that reads it."""
    return (os.environ if environ is None else environ).get(MANIFEST_ENV, "")


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a graphmesh process needs to find its dependencies and tune itself."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/graphmesh"
    # One NATS URL, or a cluster's servers comma-separated.
    nats_url: str = "nats://127.0.0.1:4222"
    # Copies of each JetStream stream, applied by `graphmesh migrate` (3 on a NATS cluster).
    nats_replicas: int = 1
    listen: str = "127.0.0.1:0"
    # host:port other processes dial to reach this one (a worker registers it for doctor
    # and the api). Empty: the listen address, with a wildcard host replaced by this
    # host's IP address.
    advertise_address: str = ""
    # A second address this process also serves, bound with SO_REUSEPORT so that several
    # replicas on one host share it (the kernel spreads connections): `up --api-replicas N`.
    shared_listen: str = ""
    log_level: str = "INFO"
    worker_id: str = field(default_factory=lambda: f"worker-{socket.gethostname()}-{os.getpid()}")
    # Runs one worker executes at once.
    worker_concurrency: int = 8
    # On SIGTERM (a deploy) a worker takes no new runs and gives its active ones this long to
    # finish before handing them back at a step boundary. Give the process longer to live
    # (Kubernetes: terminationGracePeriodSeconds) than this.
    drain_grace_seconds: float = 30.0
    # A run's lease in Postgres and the queue's ack wait; both are renewed every third of
    # the shorter while a run executes. A crashed worker's run resumes elsewhere within
    # about max(lease, ack wait) plus a fetch: under 10 s with these defaults.
    lease_seconds: float = 8.0
    ack_wait_seconds: float = 8.0
    # A run whose executions ended this many times in a row without a result (each crashed
    # or killed its worker) is failed with CRASH_LOOP and kept as a dead letter.
    max_deliveries: int = 5
    # A job message delivered this many times, each failing before it could claim its run
    # (it names no valid run, or an error on the way), is terminated: JetStream stops
    # redelivering it. The run itself, if any, is re-published by the reconciler.
    max_job_failures: int = 5
    # Per-process database connections.
    db_pool_size: int = 20
    # How long a call waits for a database connection before answering UNAVAILABLE.
    db_timeout_seconds: float = 5.0
    # Every reconcile_seconds, runs that should progress but have no live lease are re-published.
    reconcile_seconds: float = 5.0
    # ... once they have been quiet (no update, no live lease) for this long.
    orphan_quiet_seconds: float = 30.0
    # OpenTelemetry traces (off: no spans at all, e.g. to measure their cost), and whether
    # spans are also kept in Postgres for GetRunTrace. OTLP export follows the standard
    # OTEL_EXPORTER_OTLP_* variables.
    tracing: bool = True
    trace_store: bool = True
    # host:port of the Prometheus /metrics endpoint; empty: not served.
    metrics_listen: str = ""
    # "token": every RPC needs a bearer token (static API token or JWT); "none": nobody
    # is checked (development only; callers name themselves in gm-principal metadata).
    auth: str = "token"
    jwt_secret: str = ""  # HS256 key for JWTs
    jwt_public_key_file: str = ""  # or a PEM public key (RS256/ES256)
    jwt_issuer: str = ""  # required `iss`, when set
    # TLS for the gRPC servers: certificate and key files; with a client CA, mutual TLS
    # (clients must present a certificate that CA signed).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # The review process's web page (host:port; empty: not served) and the api it reads runs,
    # thread state and traces from (host:port; empty: the page shows approvals only).
    review_web_listen: str = ""
    api_address: str = ""
    # Period of the retention sweeper (api); 0 switches it off.
    retention_seconds: float = 300.0
    # Schedules (api): how often due schedules are looked for (0 switches the scheduler off
    # in this process), and how late a fire may be handled before it counts as missed (then
    # the schedule's missed_policy decides: skip it, or catch up).
    scheduler_seconds: float = 1.0
    schedule_missed_after_seconds: float = 60.0
    # Webhooks (api): the per-deployment signing secret (Standard Webhooks, "whsec_" + base64;
    # empty: webhooks are refused), the outbound policy, and the sender's pacing.
    webhook_secret: str = ""
    webhook_allow_private: bool = False  # loopback, private and link-local targets
    webhook_allowed_domains: str = ""  # comma-separated; a domain also allows its subdomains; empty: any
    webhook_allowed_ports: str = "80,443"  # comma-separated, or * for any
    # Networks (comma-separated CIDRs) allowed even though private or loopback: an internal
    # receiver such as 10.2.0.0/16, without opening every private address.
    webhook_allowed_networks: str = ""
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    # The sender's poll period; and the retry backoff: the n-th retry waits about
    # base * 4^(n-1) seconds (half of it fixed, half random), at most the max.
    webhook_seconds: float = 1.0
    webhook_backoff_seconds: float = 5.0
    webhook_backoff_max_seconds: float = 3600.0
    # The LangGraph HTTP API gateway (services/gateway): where it listens (host:port), the
    # review tier it decides interrupts through (the api is api_address), the SSE heartbeat
    # period, and the browser origins CORS allows (comma-separated, * for any).
    gateway_listen: str = "127.0.0.1:2024"
    review_address: str = ""
    gateway_heartbeat_seconds: float = 10.0
    gateway_cors_origins: str = "*"
    # Long-term memory (LangGraph's Postgres store): the default time to live of an item put
    # without one (0: items live until deleted), and how often expired items are swept.
    store_default_ttl_minutes: float = 0.0
    store_sweep_minutes: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            database_url=_env(environ, "DATABASE_URL", defaults.database_url),
            nats_url=_env(environ, "NATS_URL", defaults.nats_url),
            nats_replicas=int(_env(environ, "NATS_REPLICAS", str(defaults.nats_replicas))),
            listen=_env(environ, "LISTEN", defaults.listen),
            advertise_address=_env(environ, "ADVERTISE_ADDRESS", ""),
            shared_listen=_env(environ, "SHARED_LISTEN", ""),
            log_level=_env(environ, "LOG_LEVEL", defaults.log_level),
            worker_id=_env(environ, "WORKER_ID", defaults.worker_id),
            worker_concurrency=int(_env(environ, "WORKER_CONCURRENCY", str(defaults.worker_concurrency))),
            drain_grace_seconds=float(_env(environ, "DRAIN_GRACE_SECONDS", str(defaults.drain_grace_seconds))),
            lease_seconds=float(_env(environ, "LEASE_SECONDS", str(defaults.lease_seconds))),
            ack_wait_seconds=float(_env(environ, "ACK_WAIT_SECONDS", str(defaults.ack_wait_seconds))),
            max_deliveries=int(_env(environ, "MAX_DELIVERIES", str(defaults.max_deliveries))),
            max_job_failures=int(_env(environ, "MAX_JOB_FAILURES", str(defaults.max_job_failures))),
            db_pool_size=int(_env(environ, "DB_POOL_SIZE", str(defaults.db_pool_size))),
            db_timeout_seconds=float(_env(environ, "DB_TIMEOUT_SECONDS", str(defaults.db_timeout_seconds))),
            reconcile_seconds=float(_env(environ, "RECONCILE_SECONDS", str(defaults.reconcile_seconds))),
            orphan_quiet_seconds=float(_env(environ, "ORPHAN_QUIET_SECONDS", str(defaults.orphan_quiet_seconds))),
            tracing=_flag(_env(environ, "TRACING", "1"), "GRAPHMESH_TRACING"),
            trace_store=_flag(_env(environ, "TRACE_STORE", "1"), "GRAPHMESH_TRACE_STORE"),
            metrics_listen=_env(environ, "METRICS_LISTEN", defaults.metrics_listen),
            auth=_env(environ, "AUTH", defaults.auth),
            jwt_secret=_env(environ, "JWT_SECRET", ""),
            jwt_public_key_file=_env(environ, "JWT_PUBLIC_KEY_FILE", ""),
            jwt_issuer=_env(environ, "JWT_ISSUER", ""),
            tls_cert_file=_env(environ, "TLS_CERT_FILE", ""),
            tls_key_file=_env(environ, "TLS_KEY_FILE", ""),
            tls_client_ca_file=_env(environ, "TLS_CLIENT_CA_FILE", ""),
            review_web_listen=_env(environ, "REVIEW_WEB_LISTEN", ""),
            api_address=_env(environ, "API_ADDRESS", ""),
            retention_seconds=float(_env(environ, "RETENTION_SECONDS", str(defaults.retention_seconds))),
            scheduler_seconds=float(_env(environ, "SCHEDULER_SECONDS", str(defaults.scheduler_seconds))),
            schedule_missed_after_seconds=float(_env(environ, "SCHEDULE_MISSED_AFTER_SECONDS",
                                                     str(defaults.schedule_missed_after_seconds))),
            webhook_secret=_env(environ, "WEBHOOK_SECRET", ""),
            webhook_allow_private=_flag(_env(environ, "WEBHOOK_ALLOW_PRIVATE", "0"), "GRAPHMESH_WEBHOOK_ALLOW_PRIVATE"),
            webhook_allowed_domains=_env(environ, "WEBHOOK_ALLOWED_DOMAINS", ""),
            webhook_allowed_ports=_env(environ, "WEBHOOK_ALLOWED_PORTS", defaults.webhook_allowed_ports),
            webhook_allowed_networks=_env(environ, "WEBHOOK_ALLOWED_NETWORKS", ""),
            webhook_timeout_seconds=float(_env(environ, "WEBHOOK_TIMEOUT_SECONDS", str(defaults.webhook_timeout_seconds))),
            webhook_max_attempts=int(_env(environ, "WEBHOOK_MAX_ATTEMPTS", str(defaults.webhook_max_attempts))),
            webhook_seconds=float(_env(environ, "WEBHOOK_SECONDS", str(defaults.webhook_seconds))),
            webhook_backoff_seconds=float(_env(environ, "WEBHOOK_BACKOFF_SECONDS",
                                               str(defaults.webhook_backoff_seconds))),
            webhook_backoff_max_seconds=float(_env(environ, "WEBHOOK_BACKOFF_MAX_SECONDS",
                                                   str(defaults.webhook_backoff_max_seconds))),
            gateway_listen=_env(environ, "GATEWAY_LISTEN", defaults.gateway_listen),
            review_address=_env(environ, "REVIEW_ADDRESS", ""),
            gateway_heartbeat_seconds=float(_env(environ, "GATEWAY_HEARTBEAT_SECONDS",
                                                 str(defaults.gateway_heartbeat_seconds))),
            gateway_cors_origins=_env(environ, "GATEWAY_CORS_ORIGINS", defaults.gateway_cors_origins),
            store_default_ttl_minutes=float(_env(environ, "STORE_DEFAULT_TTL_MINUTES",
                                                 str(defaults.store_default_ttl_minutes))),
            store_sweep_minutes=float(_env(environ, "STORE_SWEEP_MINUTES", str(defaults.store_sweep_minutes))),
        )
