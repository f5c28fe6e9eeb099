"""Supervisor that runs a whole graphmesh on one machine: Postgres, NATS and the services.

Used by `graphmesh up` and by the integration tests. Every service is its own process in
its own session, configured only through GRAPHMESH_* environment variables.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from graphmesh.certs import server_env
from graphmesh.config import Settings
from graphmesh.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    die_with_parent,
    free_ports,
    log_tail,
    port_open,
    stop_process,
)
from graphmesh.embedded.nats import run_coro
from graphmesh.project import locate_manifest

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent  # graphmesh/mesh.py -> repo root

# Service kind -> argv. Tests may swap in stand-ins via Mesh(commands=...).
# -P: services run in the project's directory, whose own folders (a `services/` or
# `graphs/` of the user's) must not shadow graphmesh's packages.
DEFAULT_COMMANDS: dict[str, list[str]] = {
    "api": [sys.executable, "-P", "-m", "services.api"],
    "review": [sys.executable, "-P", "-m", "services.review"],
    "worker": [sys.executable, "-P", "-m", "services.worker"],
    "preflight": [sys.executable, "-P", "-m", "graphmesh.preflight"],
}


@dataclass
class MeshConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    api_port: int = 50051  # 0 = free port
    review_port: int = 50052
    worker_base_port: int = 50061  # worker-1 listens on base, worker-2 on base+1, ...; 0 = free ports
    workers: int = 2
    worker_concurrency: int = 8
    database_url: str | None = None  # external Postgres: don't start our own
    nats_url: str | None = None  # external NATS
    # None: GRAPHMESH_CONFIG, else graphmesh.yaml or langgraph.json in the working directory,
    # else the bundled examples (graphmesh.project.locate_manifest).
    manifest: Path | None = None
    # Per-worker manifests ("worker-1" -> path), e.g. an old version's worker kept alive.
    worker_manifests: dict[str, Path] = field(default_factory=dict)
    metrics: bool = True  # each service serves Prometheus /metrics on a free port
    # "token": every RPC needs a bearer token (see create_token); "none": development only.
    auth: str = "token"
    # A directory of certificates (graphmesh certs create): the services then serve mutual TLS.
    tls_dir: Path | None = None
    log_level: str = "INFO"
    fast_postgres: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60
    stop_grace: float = 10  # seconds between SIGTERM and SIGKILL for a service
    preflight: bool = True  # load every graph (in a process of its own) before starting anything


@dataclass
class _Service:
    name: str
    kind: str
    port: int
    metrics_port: int = 0
    proc: subprocess.Popen | None = None


class Mesh:
    def __init__(
        self,
        config: MeshConfig,
        *,
        commands: dict[str, list[str]] | None = None,
        report: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.report = report or log.info  # progress lines, e.g. what stop() shuts down
        self.data_dir = Path(config.data_dir).absolute()
        self.log_dir = self.data_dir / "logs"
        self.commands = {**DEFAULT_COMMANDS, **(commands or {})}
        self.manifest = Path(config.manifest or locate_manifest()).absolute()
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self._services = self._plan_services()
        self._started = False

    # -- addresses ---------------------------------------------------------------

    def _plan_services(self) -> dict[str, _Service]:
        c = self.config
        # Ports are fixed once so restarts keep every address stable.
        wanted = [c.api_port, c.review_port] + [
            c.worker_base_port + i if c.worker_base_port else 0 for i in range(c.workers)
        ]
        # One free_ports call for every port we pick (gRPC and metrics): two calls could hand
        # out the same port twice, since neither keeps its ports bound.
        metrics = len(wanted) if c.metrics else 0
        spare = iter(free_ports(wanted.count(0) + metrics + 2, c.host))
        self._backend_ports = (next(spare), next(spare))  # embedded Postgres, NATS
        ports = [p or next(spare) for p in wanted]
        services = [_Service("api", "api", ports[0]), _Service("review", "review", ports[1])]
        services += [_Service(f"worker-{i}", "worker", ports[1 + i]) for i in range(1, c.workers + 1)]
        for s in services[:metrics]:
            s.metrics_port = next(spare)
        return {s.name: s for s in services}

    def address(self, name: str) -> str:
        return f"{self.config.host}:{self._service(name).port}"

    def metrics_url(self, name: str) -> str:
        """The service's Prometheus endpoint ('' when metrics are off)."""
        s = self._service(name)
        return f"http://{self.config.host}:{s.metrics_port}/metrics" if s.metrics_port else ""

    @property
    def api_address(self) -> str:
        return self.address("api")

    @property
    def review_address(self) -> str:
        return self.address("review")

    @property
    def worker_addresses(self) -> list[str]:
        return [self.address(n) for n, s in self._services.items() if s.kind == "worker"]

    @property
    def service_names(self) -> list[str]:
        return list(self._services)

    @property
    def database_url(self) -> str:
        if self.config.database_url:
            return self.config.database_url
        if self.postgres is None:
            raise RuntimeError("mesh not started: no database yet")
        return self.postgres.url

    @property
    def nats_url(self) -> str:
        if self.config.nats_url:
            return self.config.nats_url
        if self.nats is None:
            raise RuntimeError("mesh not started: no NATS yet")
        return self.nats.url

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        proc = self._service(name).proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        # Safety net: a supervisor that exits without stop() must not leave orphans.
        atexit.register(self.stop)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self.config.preflight:
                self._preflight()
            self._start_backends()
            self._prepare()
            for name in self._services:
                self._spawn(name)
            for name in self._services:
                self._wait_serving(name)
        except BaseException:
            self.stop()
            raise

    def stop(self, report: Callable[[str], None] | None = None) -> None:
        """Services first (they flush to NATS/Postgres), then NATS, then Postgres. Idempotent."""
        say = report or self.report
        running = [s for s in self._services.values() if s.proc is not None]
        for s in running:  # signal all first so they shut down in parallel
            say(f"stopping {s.name} (pid {s.proc.pid})")
            self._signal(s, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_grace
        for s in running:
            try:
                s.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{s.name} ignored SIGTERM for {self.config.stop_grace}s: killing it")
            stop_process(s.proc, signal.SIGKILL, 5)  # no-op if it exited; reaps its group
            s.proc = None
        if self.nats is not None and self.nats.is_running():
            say(f"stopping nats ({_without_credentials(self.nats.url)})")
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None and self.postgres.is_running():
            say(f"stopping postgres ({_without_credentials(self.postgres.url)})")
        if self.postgres is not None:
            self.postgres.stop()
        self._started = False
        atexit.unregister(self.stop)

    def start_service(self, name: str, *, wait: bool = True) -> None:
        self._spawn(name)
        if wait:
            self._wait_serving(name)

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        """SIGTERM and a grace period, or SIGKILL at once with kill=True (a crash)."""
        s = self._service(name)
        if kill:
            stop_process(s.proc, signal.SIGKILL, 5)
        else:
            stop_process(s.proc, signal.SIGTERM, self.config.stop_grace)
        s.proc = None

    def restart_service(self, name: str, *, kill: bool = False) -> None:
        self.stop_service(name, kill=kill)
        self.start_service(name)

    def __enter__(self) -> "Mesh":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------

    def _service(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; known: {', '.join(self._services)}") from None

    def _start_backends(self) -> None:
        c = self.config
        if not c.database_url:
            self.postgres = self.postgres or EmbeddedPostgres(
                self.data_dir / "postgres", host=c.host, port=self._backend_ports[0],
                log_path=self.log_dir / "postgres.log", fast=c.fast_postgres
            )
            self.postgres.start()
        if not c.nats_url:
            self.nats = self.nats or EmbeddedNats(self.data_dir / "nats", host=c.host, port=self._backend_ports[1],
                                                  log_path=self.log_dir / "nats.log",
                                                  auth_token=self._secret("nats-token"))
            self.nats.start()

    def _manifest_of(self, s: _Service) -> Path:
        return Path(self.config.worker_manifests.get(s.name) or self.manifest).absolute()

    def _preflight(self) -> None:
        """Every graph of every manifest the services will load must load, or nothing starts."""
        for manifest in dict.fromkeys(self._manifest_of(s) for s in self._services.values()):
            env = {**os.environ, **self.config.extra_env, "GRAPHMESH_CONFIG": str(manifest)}
            done = subprocess.run([*self.commands["preflight"], str(manifest)], cwd=manifest.parent, env=env,
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL)
            lines = (done.stdout + done.stderr).strip().splitlines()
            for line in lines:
                if line.startswith("notice:"):
                    self.report(line)
            if done.returncode != 0:
                problems = [ln for ln in lines if not ln.startswith(("notice:", "ok "))] or lines
                raise RuntimeError(f"graphs of {manifest} do not load, so nothing was started:\n  "
                                   + "\n  ".join(problems))

    def _prepare(self) -> None:
        """Create the SQL schema and JetStream streams (idempotent) before any service runs."""
        from graphmesh.setup import prepare

        # The queue's settings come from the same GRAPHMESH_* values the services get.
        settings = Settings.from_env({**os.environ, **self.config.extra_env})
        run_coro(lambda: prepare(self.database_url, self.nats_url, settings=settings))

    def create_token(self, principal: str, roles: list[str], graphs: list[str] | None = None,
                     *, created_by: str = "graphmesh up") -> tuple[str, str]:
        """A static API token, straight in the database: (token id, plain token)."""
        return self._with_tokens(lambda tokens: tokens.create(principal, roles, graphs or ["*"],
                                                              created_by=created_by))

    def token_is_active(self, token: str) -> bool:
        async def check(tokens) -> bool:
            return await tokens.principal(token) is not None
        return self._with_tokens(check)

    def _with_tokens(self, use):
        from graphmesh.auth.tokens import TokenStore
        from graphmesh.db import make_pool
        from graphmesh.store import RunStore

        async def run():
            pool = make_pool(self.database_url, max_size=2, timeout=10)
            await pool.open(wait=True, timeout=30)
            try:
                return await use(TokenStore(RunStore(pool)))
            finally:
                await pool.close()

        return run_coro(run)

    def _secret(self, name: str) -> str:
        """A random credential kept in the data directory (owner-only), so restarts reuse it."""
        import secrets

        path = self.data_dir / name
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _env(self, s: _Service) -> dict[str, str]:
        c = self.config
        env = {**os.environ, **c.extra_env}
        env.update(
            GRAPHMESH_DATABASE_URL=self.database_url,
            GRAPHMESH_NATS_URL=self.nats_url,
            GRAPHMESH_LISTEN=f"{c.host}:{s.port}",
            GRAPHMESH_LOG_LEVEL=c.log_level,
            GRAPHMESH_AUTH=c.auth,
            **(server_env(Path(c.tls_dir)) if c.tls_dir else {}),
            GRAPHMESH_METRICS_LISTEN=f"{c.host}:{s.metrics_port}" if s.metrics_port else "",
            PYTHONUNBUFFERED="1",  # logs reach the file as they happen
        )
        env["GRAPHMESH_CONFIG"] = str(self._manifest_of(s))
        if s.kind == "worker":
            env["GRAPHMESH_WORKER_ID"] = s.name
            env["GRAPHMESH_WORKER_CONCURRENCY"] = str(c.worker_concurrency)
        return env

    def _spawn(self, name: str) -> None:
        s = self._service(name)
        if s.proc is not None and s.proc.poll() is None:
            return
        if port_open(self.config.host, s.port):  # or the health check would greet a stranger
            raise RuntimeError(f"cannot start {name}: {self.address(name)} is already in use")
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name} on {self.address(name)} ===\n".encode())
            out.flush()
            s.proc = subprocess.Popen(
                self.commands[s.kind], cwd=self._manifest_of(s).parent, env=self._env(s), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
            )

    def _signal(self, s: _Service, sig: int) -> None:
        try:
            if s.proc is not None and s.proc.poll() is None:
                os.kill(s.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_serving(self, name: str) -> None:
        s = self._service(name)
        address = self.address(name)
        deadline = time.monotonic() + self.config.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if s.proc is None or s.proc.poll() is not None:
                code = None if s.proc is None else s.proc.returncode
                raise RuntimeError(
                    f"{name} exited (code {code}) before serving on {address}; "
                    f"log {self.log_path(name)}:\n{log_tail(self.log_path(name))}"
                )
            last = _health_status(address, tls_dir=self.config.tls_dir)
            if last == "SERVING":
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"{name} not SERVING on {address} after {self.config.ready_timeout}s (last: {last}); "
            f"log {self.log_path(name)}:\n{log_tail(self.log_path(name))}"
        )


def _health_status(address: str, timeout: float = 1.0, tls_dir: Path | None = None) -> str:
    import grpc

    from graphmesh.health import serving_status
    from graphmesh.rpc.tls import client_credentials

    channel = (grpc.secure_channel(address, client_credentials(str(tls_dir / "ca.pem"), str(tls_dir / "client.pem"),
                                                               str(tls_dir / "client-key.pem")))
               if tls_dir else grpc.insecure_channel(address))
    with channel:
        return serving_status(channel, timeout)


def _without_credentials(url: str) -> str:
    """The URL without its user info (the embedded NATS URL carries the mesh's token)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


__all__ = ["DEFAULT_COMMANDS", "Mesh", "MeshConfig", "REPO_ROOT"]
