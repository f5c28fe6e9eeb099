"""Supervisor that runs a whole graphmesh on one machine: Postgres, NATS and the services.

Used by `graphmesh up` and by the integration tests. Every service is its own process in
its own session, configured only through GRAPHMESH_* environment variables.

With MeshConfig(supervise=True) (what `up` runs) a thread of this process restarts whatever
dies: a service whose process exited, the embedded Postgres or NATS whose server process
exited. Restarts wait restart_backoff (0.5 s), doubling with each consecutive one up to
restart_backoff_max (30 s), and start from 0.5 s again after restart_reset (60 s) up; each
is reported (which process, its exit status, the attempt) and counted in `Mesh.restarts`.
What is stopped on purpose is left alone: a service stopped with stop_service (until
start_service), a server stopped with its stop(). Every child also dies with this process
(PDEATHSIG), Postgres included, so a SIGKILLed `up` leaves nothing running.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from graphmesh.certs import client_env, server_env
from graphmesh.config import MANIFEST_ENV, Settings
from graphmesh.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    die_with_parent,
    free_port,
    free_ports,
    log_tail,
    port_open,
    stop_process,
)
from graphmesh.embedded.nats import run_coro
from graphmesh.grpc_fork import keep_grpc_fork_support_off
from graphmesh.project import locate_manifest
from graphmesh.webhooks.signing import new_secret

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent  # graphmesh/mesh.py -> repo root

# Service kind -> argv. Tests may swap in stand-ins via Mesh(commands=...).
# -P: services run in the project's directory, whose own folders (a `services/` or
# `graphs/` of the user's) must not shadow graphmesh's packages.
DEFAULT_COMMANDS: dict[str, list[str]] = {
    "api": [sys.executable, "-P", "-m", "services.api"],
    "review": [sys.executable, "-P", "-m", "services.review"],
    "worker": [sys.executable, "-P", "-m", "services.worker"],
    "gateway": [sys.executable, "-P", "-m", "services.gateway"],
    "preflight": [sys.executable, "-P", "-m", "graphmesh.preflight"],
}


@dataclass
class MeshConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    api_port: int = 50051  # 0 = free port
    # More than one: api, api-2, ... each on a port of its own and all on api_port, which
    # they share through SO_REUSEPORT (the kernel spreads connections over them).
    api_replicas: int = 1
    review_port: int = 50052
    review_web_port: int | None = 0  # the review page (HTTP); 0 = free port, None = not served
    # The LangGraph HTTP API gateway (services/gateway): its HTTP port (0 = free port, None =
    # not run). Off by default here (tests that want it ask); `graphmesh up` serves it on 2024,
    # the port `langgraph dev` uses, so existing clients need no new URL.
    gateway_port: int | None = None
    # More than one: gateway, gateway-2, ...; the first on gateway_port, the others each on a
    # free port of its own (Mesh.gateway_urls), so a client can be moved from one to another.
    gateway_replicas: int = 1
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
    # Webhooks: the api processes sign with a secret generated into the data directory
    # (unless GRAPHMESH_WEBHOOK_SECRET is given). A local development mesh lets webhooks
    # reach this machine and its network (loopback and private addresses, any port), where a
    # developer's receiver runs; False keeps the production outbound policy (docs/webhooks.md).
    # GRAPHMESH_WEBHOOK_* variables in the environment or extra_env win over both.
    webhook_local_targets: bool = True
    ready_timeout: float = 60
    stop_grace: float = 10  # seconds between SIGTERM and SIGKILL for a service
    preflight: bool = True  # load every graph (in a process of its own) before starting anything
    # Restart what dies (services, the embedded Postgres and NATS) from a supervision thread,
    # with backoff: `graphmesh up` sets it. Off for tests that kill things on purpose; services
    # stopped through stop_service are never restarted behind the caller's back either way.
    supervise: bool = False
    restart_backoff: float = 0.5  # first delay before a restart; doubles with each consecutive one
    restart_backoff_max: float = 30.0
    restart_reset: float = 60.0  # up this long after a restart: the next death waits restart_backoff again
    supervise_interval: float = 0.25  # how often the thread looks at every process


@dataclass
class _Service:
    name: str
    kind: str
    port: int
    metrics_port: int = 0
    shared_port: int = 0  # an address it serves with its replicas (api replicas)
    proc: subprocess.Popen | None = None
    picked: bool = False  # its port was picked free (the config said 0), not asked for
    spawned: bool = False  # started at least once: its address is known and must stay


@dataclass
class _Watch:
    """Supervision state of one process."""

    attempt: int = 0  # consecutive restarts (reset after restart_reset seconds up)
    due: float | None = None  # monotonic time the next restart is due; None: none pending
    started: float = 0.0  # monotonic time of the last restart
    code: int | None = None  # the exit status that made the pending restart
    retrying: bool = False  # the pending restart follows a failed one (the process may be absent)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


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
        # Supervision (config.supervise, or supervise()): restarts per process, e.g.
        # {"api": 0, "review": 0, "worker-1": 2, "postgres": 1, "nats": 0}.
        self.restarts: dict[str, int] = {name: 0 for name in self._services}
        self._watch: dict[str, _Watch] = {}
        self._paused: set[str] = set()  # stopped through stop_service: not restarted until started
        self._lock = threading.RLock()  # supervision vs. the test API's stop/start calls
        self._supervising = False
        self._supervisor: threading.Thread | None = None
        self._supervisor_exit = threading.Event()

    # -- addresses ---------------------------------------------------------------

    def _plan_services(self) -> dict[str, _Service]:
        c = self.config
        # Ports are fixed once so restarts keep every address stable.
        if c.api_replicas < 1:
            raise ValueError("api_replicas must be at least 1")
        if c.gateway_replicas < 1:
            raise ValueError("gateway_replicas must be at least 1")
        replicas = c.api_replicas > 1
        gateways = 0 if c.gateway_port is None else c.gateway_replicas
        wanted = [0 if replicas else c.api_port, c.review_port] + [
            c.worker_base_port + i if c.worker_base_port else 0 for i in range(c.workers)
        ] + [0] * (c.api_replicas - 1) + ([c.gateway_port or 0] + [0] * (gateways - 1) if gateways else [])
        # One free_ports call for every port we pick (gRPC and metrics): two calls could hand
        # out the same port twice, since neither keeps its ports bound.
        metrics = len(wanted) if c.metrics else 0
        spare = iter(free_ports(wanted.count(0) + metrics + 4, c.host))
        self._backend_ports = (next(spare), next(spare))  # embedded Postgres, NATS
        web, shared = next(spare), next(spare)
        self.review_web_port = None if c.review_web_port is None else (c.review_web_port or web)
        self.shared_api_port = (c.api_port or shared) if replicas else 0
        ports = [p or next(spare) for p in wanted]
        services = [_Service("api", "api", ports[0], shared_port=self.shared_api_port),
                    _Service("review", "review", ports[1])]
        services += [_Service(f"worker-{i}", "worker", ports[1 + i]) for i in range(1, c.workers + 1)]
        services += [_Service(f"api-{i}", "api", ports[c.workers + i], shared_port=self.shared_api_port)
                     for i in range(2, c.api_replicas + 1)]
        first_gateway = 2 + c.workers + c.api_replicas - 1
        services += [_Service("gateway" if i == 1 else f"gateway-{i}", "gateway", ports[first_gateway + i - 1])
                     for i in range(1, gateways + 1)]
        for s, asked in zip(services, wanted):
            s.picked = not asked
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
        """Where clients reach the api: the address its replicas share, if several."""
        return f"{self.config.host}:{self.shared_api_port}" if self.shared_api_port else self.address("api")

    @property
    def api_replica_names(self) -> list[str]:
        return [n for n, s in self._services.items() if s.kind == "api"]

    @property
    def review_address(self) -> str:
        return self.address("review")

    @property
    def gateway_names(self) -> list[str]:
        return [n for n, s in self._services.items() if s.kind == "gateway"]

    def gateway_url_of(self, name: str) -> str:
        """A gateway replica's base URL (https when the mesh serves TLS)."""
        s = self._service(name)
        if s.kind != "gateway":
            raise KeyError(f"{name} is not a gateway")
        return f"{'https' if self.config.tls_dir else 'http'}://{self.config.host}:{s.port}"

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway replica's URL, the first on gateway_port; [] when none runs."""
        return [self.gateway_url_of(n) for n in self.gateway_names]

    @property
    def gateway_url(self) -> str:
        """The LangGraph HTTP API's URL (the first replica); '' when the gateway is off."""
        urls = self.gateway_urls
        return urls[0] if urls else ""

    @property
    def review_page_url(self) -> str:
        """The review page ('' when not served); https when the mesh serves TLS."""
        if self.review_web_port is None:
            return ""
        return f"{'https' if self.config.tls_dir else 'http'}://{self.config.host}:{self.review_web_port}/"

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
        keep_grpc_fork_support_off()  # the children inherit it; warns if this process imported grpc first
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
            self._write_record()
            if self.config.supervise:
                self.supervise()
        except BaseException:
            self.stop()
            raise

    def stop(self, report: Callable[[str], None] | None = None) -> None:
        """Services first (they flush to NATS/Postgres), then NATS, then Postgres. Idempotent."""
        say = report or self.report
        with self._lock:  # a restart in progress finishes first; none starts afterwards
            self._supervising = False
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
        # Last: the processes this thread restarted have it as their parent (PDEATHSIG).
        self._supervisor_exit.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        self._supervisor = None
        self._started = False
        atexit.unregister(self.stop)

    def start_service(self, name: str, *, wait: bool = True) -> None:
        with self._lock:
            self._spawn(name)
            self._paused.discard(name)  # supervised again (when supervision is on)
            self._watch.pop(name, None)
        if wait:
            self._wait_serving(name)

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        """SIGTERM and a grace period, or SIGKILL at once with kill=True (a crash). A service
        stopped here stays stopped, supervised or not, until start_service."""
        s = self._service(name)
        with self._lock:
            self._paused.add(name)
            self._watch.pop(name, None)
        if kill:
            stop_process(s.proc, signal.SIGKILL, 5)
        else:
            stop_process(s.proc, signal.SIGTERM, self.config.stop_grace)
        s.proc = None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Sends `sig` to a service or to the embedded "postgres" / "nats" server (the
        postmaster itself) as a crash would: supervision, when on, restarts it. Returns the pid."""
        if name in ("postgres", "nats"):
            server = self.postgres if name == "postgres" else self.nats
            if server is None or not server.is_running():
                raise RuntimeError(f"{name} is not running here")
            pid = server.pid
        else:
            pid = self.pid(name)
            if pid is None:
                raise RuntimeError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    # -- supervision -------------------------------------------------------------

    def supervise(self) -> None:
        """Restarts, from a thread of this process, every service, and the embedded Postgres
        and NATS, that dies (not those stopped on purpose): with backoff (restart_backoff,
        doubling to restart_backoff_max, back to the start after restart_reset seconds up),
        each restart reported and counted in `restarts`. start() calls it when config.supervise."""
        with self._lock:
            for name in ("postgres", "nats"):
                if getattr(self, name) is not None:
                    self.restarts.setdefault(name, 0)
            self._supervising = True
            if self._supervisor is not None and self._supervisor.is_alive():
                return
            self._supervisor_exit.clear()
            self._supervisor = threading.Thread(target=self._supervise_loop, name="graphmesh-supervisor",
                                                daemon=True)
            self._supervisor.start()

    @property
    def supervising(self) -> bool:
        return self._supervising

    def _supervise_loop(self) -> None:
        while not self._supervisor_exit.wait(self.config.supervise_interval):
            with self._lock:
                if not self._supervising:
                    continue
                try:
                    self._supervise_once()
                except Exception:  # a supervisor that dies of a bug restarts nothing again
                    log.exception("supervision check failed")

    def _supervise_once(self) -> None:
        # Backends first: services come up NOT_SERVING without them, and recover by themselves.
        for name, server in (("postgres", self.postgres), ("nats", self.nats)):
            if server is not None:
                self._check(name, server.exited(), lambda server=server: self._restart_server(server))
        for name, s in self._services.items():
            if name in self._paused:
                continue
            code = s.proc.poll() if s.proc is not None else None
            self._check(name, code, lambda name=name: self._restart_service(name))

    def _check(self, name: str, code: int | None, restart: Callable[[], int | None]) -> None:
        c = self.config
        now = time.monotonic()
        w = self._watch.setdefault(name, _Watch())
        if w.due is None:
            if code is None:  # running (or stopped on purpose)
                if w.attempt and now - w.started >= c.restart_reset:
                    w.attempt = 0  # healthy for a while: the next death restarts quickly again
                return
            w.code, w.due = code, now + self._delay(w)
            self.report(f"{name} exited ({_exit_text(code)}); restart {self.restarts.get(name, 0) + 1} "
                        f"in {w.due - now:.1f}s")
            log.warning("%s exited (%s); restarting it", name, _exit_text(code))
            return
        if code is None and not w.retrying:
            # Back, or stopped on purpose (server.stop() reaps a server before it forgets it),
            # before its restart was due: nothing left to do.
            w.due = None
            return
        if now < w.due:
            return
        w.attempt += 1
        w.started = now
        try:
            pid = restart()
        except Exception as exc:
            # Counted once the attempt is over: a count that moved means the process is back
            # (ready, for Postgres and NATS) or the attempt failed and the next one is scheduled.
            self.restarts[name] = self.restarts.get(name, 0) + 1
            w.due, w.retrying = time.monotonic() + self._delay(w), True
            self.report(f"{name} restart {self.restarts[name]} failed: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                        f"next try in {w.due - time.monotonic():.1f}s")
            return
        self.restarts[name] = self.restarts.get(name, 0) + 1
        w.due, w.retrying = None, False
        self.report(f"{name} restarted (pid {pid}; it had {_exit_text(w.code)}; "
                    f"restart {self.restarts[name]}, {w.attempt} in a row)")

    def _delay(self, w: _Watch) -> float:
        c = self.config
        return min(c.restart_backoff * (2 ** w.attempt), c.restart_backoff_max)

    def _restart_server(self, server) -> int | None:
        server.stop()  # reaps the dead server's group: leftover backends hold its shared memory
        server.start()
        return server.pid

    def _restart_service(self, name: str) -> int | None:
        s = self._service(name)
        if s.proc is not None:
            stop_process(s.proc, signal.SIGKILL, 0)  # reaps it and anything left in its group
            s.proc = None
        self._spawn(name)
        return s.proc.pid if s.proc is not None else None

    def _write_record(self) -> None:
        """<data-dir>/mesh.json: what this mesh runs (services, workers expected), for
        `graphmesh doctor`, which compares the live workers with these."""
        import json

        record = {
            "pid": os.getpid(),
            "api": self.api_address,
            "review": self.address("review"),
            "review_page": self.review_page_url,
            "gateways": self.gateway_urls,
            "workers": [n for n, s in self._services.items() if s.kind == "worker"],
            "supervised": self.config.supervise,
        }
        path = self.data_dir / "mesh.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)

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
            env = {**os.environ, **self.config.extra_env, MANIFEST_ENV: str(manifest)}
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

    def _secret(self, name: str, make: Callable[[], str] | None = None) -> str:
        """A random credential kept in the data directory (owner-only), so restarts reuse it."""
        import secrets

        path = self.data_dir / name
        if not path.is_file():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(make() if make else secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _webhook_env(self, env: dict[str, str]) -> None:
        """An api's webhook settings: the deployment's signing secret, and (a local mesh) its
        outbound policy opened to this machine's network, unless the environment says otherwise."""
        env.setdefault("GRAPHMESH_WEBHOOK_SECRET", self._secret("webhook-secret", new_secret))
        if self.config.webhook_local_targets:
            env.setdefault("GRAPHMESH_WEBHOOK_ALLOW_PRIVATE", "1")
            env.setdefault("GRAPHMESH_WEBHOOK_ALLOWED_PORTS", "*")

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
        env[MANIFEST_ENV] = str(self._manifest_of(s))
        if s.kind == "review" and self.review_web_port is not None:
            env["GRAPHMESH_REVIEW_WEB_LISTEN"] = f"{c.host}:{self.review_web_port}"
            env["GRAPHMESH_API_ADDRESS"] = self.api_address
            if c.tls_dir:  # the page dials ReviewService and the api as a client
                env.update(client_env(Path(c.tls_dir)))
        if s.shared_port:
            env["GRAPHMESH_SHARED_LISTEN"] = f"{c.host}:{s.shared_port}"
        if s.kind == "api":
            self._webhook_env(env)
        if s.kind == "gateway":
            # A stateless HTTP process: it only dials the api and the review tier.
            env["GRAPHMESH_GATEWAY_LISTEN"] = f"{c.host}:{s.port}"
            env["GRAPHMESH_API_ADDRESS"] = self.api_address
            env["GRAPHMESH_REVIEW_ADDRESS"] = self.review_address
            if c.tls_dir:  # HTTPS with the mesh's server certificate; dials the others as a client
                env.update(client_env(Path(c.tls_dir)))
        if s.kind == "worker":
            env["GRAPHMESH_WORKER_ID"] = s.name
            env["GRAPHMESH_WORKER_CONCURRENCY"] = str(c.worker_concurrency)
        return env

    def _spawn(self, name: str) -> None:
        s = self._service(name)
        if s.proc is not None and s.proc.poll() is None:
            return
        # Ports picked free when the mesh was planned may have been taken since, by another
        # process starting at the same time (two `up`s at once): before a service first
        # starts, nobody knows its address yet, and nothing depends on a metrics port.
        if not s.spawned and s.picked and port_open(self.config.host, s.port):
            s.port = self._another_port()
        if s.metrics_port and port_open(self.config.host, s.metrics_port):
            s.metrics_port = self._another_port()
        s.spawned = True
        if port_open(self.config.host, s.port):  # or the health check would greet a stranger
            raise RuntimeError(f"cannot start {name}: {self.address(name)} is already in use")
        if s.shared_port and not any(self.pid(n) for n in self.api_replica_names if n != name) \
                and port_open(self.config.host, s.shared_port):  # its replicas' address, held by a stranger
            raise RuntimeError(f"cannot start {name}: {self.api_address} is already in use")
        if s.kind == "review" and self.review_web_port is not None and port_open(self.config.host,
                                                                                  self.review_web_port):
            raise RuntimeError(f"cannot start {name}: its page's port {self.config.host}:{self.review_web_port} "
                               "is already in use (up --review-web-port)")
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

    def _another_port(self) -> int:
        """A free port that is none of those planned for this mesh (some not bound yet)."""
        planned = {p for s in self._services.values() for p in (s.port, s.metrics_port, s.shared_port)}
        planned |= {*self._backend_ports, self.review_web_port or 0}
        while (port := free_port(self.config.host)) in planned:
            pass
        return port

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
            if s.kind == "gateway":
                last = _http_status(self.gateway_url_of(name), tls_dir=self.config.tls_dir)
            else:
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


def _http_status(base_url: str, timeout: float = 1.0, tls_dir: Path | None = None) -> str:
    """SERVING when an HTTP service (the gateway) answers GET /ok with 200."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(tls_dir / "ca.pem")) if tls_dir else None
    try:
        with urllib.request.urlopen(f"{base_url}/ok", timeout=timeout, context=context) as reply:
            return "SERVING" if reply.status == 200 else f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def _without_credentials(url: str) -> str:
    """The URL without its user info (the embedded NATS URL carries the mesh's token)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


__all__ = ["DEFAULT_COMMANDS", "Mesh", "MeshConfig", "REPO_ROOT"]
