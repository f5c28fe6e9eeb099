"""The host every graphmesh service process runs in: logging and telemetry (the metrics
endpoint), Postgres and NATS, the gRPC server (health, reflection), dependency health,
SIGTERM/SIGINT and an orderly shutdown. A service module only says what it serves and
which background tasks it runs.

The host supervises those tasks. One that dies with an exception is logged with its
traceback, the health service turns NOT_SERVING and the process stops and exits 1, so
its supervisor (`graphmesh up`, Kubernetes) restarts it: a worker whose consumer loop
died must not keep reporting SERVING. A task that returns (a loop switched off, the
consumer after a drain) or is cancelled is not a failure.

Shutdown, on a signal or a dead task: `stopping` is set and health turns NOT_SERVING;
the on_stop hooks run (a worker drains); the supervised tasks are cancelled; the gRPC
server stops with a grace period; the on_close hooks run, last registered first.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Awaitable, Callable

from graphmesh import secrets
from graphmesh.auth.authenticator import Authenticator
from graphmesh.bus import connect_nats
from graphmesh.config import Settings
from graphmesh.db import make_pool
from graphmesh.health import watch_dependencies
from graphmesh.logs import setup_logging
from graphmesh.rpc.server import GrpcServer
from graphmesh.rpc.tls import ServerTls
from graphmesh.telemetry.setup import setup_telemetry

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[object]]
# How long cancelled background tasks get to finish before shutdown goes on without them.
CANCEL_WAIT_SECONDS = 5.0


def process_settings(service: str, *, per_instance: bool = False) -> Settings:
    """Settings from the environment, with logging and telemetry set up for `service`
    (a worker logs and reports metrics under its worker id: per_instance). The graphs'
    secrets are redacted from everything this process writes: logs, stdout and stderr."""
    settings = Settings.from_env()
    instance = settings.worker_id if per_instance else ""
    setup_logging(instance or service, settings.log_level)
    secrets.install_redaction(streams=True)
    setup_telemetry(service, settings, instance=instance)
    return settings


def advertised_address(listen_address: str, configured: str = "") -> str:
    """The address other processes dial to reach this one: the configured one, else the
    listen address with a wildcard host (0.0.0.0, ::) replaced by this host's IP address
    (a container's or pod's), which another host can reach where 0.0.0.0 names nothing."""
    if configured:
        return configured
    host, port = listen_address.rsplit(":", 1)
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    return f"{host}:{port}"


def loopback(address: str) -> str:
    """How this process dials its own server: a wildcard host becomes 127.0.0.1."""
    host, port = address.rsplit(":", 1)
    return f"127.0.0.1:{port}" if host.strip("[]") in ("0.0.0.0", "::", "") else address


def log_registry(registry) -> None:
    """Logs the manifest's notices and loads every graph, logging those that fail."""
    for notice in registry.notices:
        log.warning("%s", notice)
    for spec, error in registry.preload():
        log.error("graph %s@%s failed to load: %s", spec.name, spec.version, error)


class ServiceHost:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set when the process begins to stop: long server streams end so clients reconnect
        # elsewhere (with their last sequence) instead of holding up the shutdown.
        self.stopping = asyncio.Event()
        self.failed: list[str] = []  # the supervised tasks that died
        self._stop = asyncio.Event()
        self._server: GrpcServer | None = None
        self._tasks: dict[asyncio.Future, str] = {}
        self._on_stop: list[Hook] = []
        self._on_close: list[Hook] = []

    # Dependencies: each is closed at the end, after the gRPC server has stopped.

    async def open_pool(self):
        s = self.settings
        pool = make_pool(s.database_url, max_size=s.db_pool_size, timeout=s.db_timeout_seconds)
        await pool.open(wait=True, timeout=30)
        self.on_close(pool.close)
        return pool

    async def connect_bus(self, name: str):
        nc = await connect_nats(self.settings.nats_url, name=name)
        self.on_close(nc.close)  # drain() would wait out a pull subscription's lingering request
        return nc

    # The gRPC server.

    def listen(self, service_names: list[str], *, auth: Authenticator) -> None:
        self._server = GrpcServer(self.settings.listen, service_names, auth=auth,
                                  tls=ServerTls.from_settings(self.settings), shared_listen=self.settings.shared_listen)

    @property
    def grpc(self):
        """The grpc.aio server, for the generated add_*Servicer_to_server functions."""
        return self._require_server().server

    @property
    def address(self) -> str:
        return self._require_server().address

    @property
    def advertised_address(self) -> str:
        return advertised_address(self.address, self.settings.advertise_address)

    def _require_server(self) -> GrpcServer:
        if self._server is None:
            raise RuntimeError("listen() first")
        return self._server

    async def set_serving(self, serving: bool) -> None:
        # Once stopping (a signal, or a dead task), a dependency recovering does not make
        # the process look healthy again.
        await self._require_server().set_serving(serving and not self._stop.is_set())

    # Background work.

    def supervise(self, name: str, work: Awaitable[object]) -> asyncio.Future:
        """Runs `work` (a coroutine or a task) until shutdown; if it raises, the service stops."""
        task = asyncio.ensure_future(work)
        self._tasks[task] = name
        task.add_done_callback(self._task_done)
        return task

    def watch_dependencies(self, pool, nc, *, also: Callable[[bool], object] | None = None) -> None:
        """Reports Postgres and NATS health on the health service (and to `also`)."""
        async def on_change(ok: bool) -> None:
            if also is not None:
                also(ok)
            await self.set_serving(ok)

        self.supervise("dependency health", watch_dependencies(pool, nc, on_change))

    def on_stop(self, hook: Hook) -> None:
        """Runs at shutdown while the supervised tasks still run (a worker's drain)."""
        self._on_stop.append(hook)

    def on_close(self, hook: Hook) -> None:
        """Runs after the gRPC server has stopped, the last registered first."""
        self._on_close.append(hook)

    def _task_done(self, task: asyncio.Future) -> None:
        name = self._tasks.get(task, "?")
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            log.info("%s ended", name)
            return
        log.error("background task %s died; stopping this service so it is restarted: %s: %s",
                  name, type(exc).__name__, exc, exc_info=exc)
        self.failed.append(name)
        self._stop.set()

    def stop(self) -> None:
        """What SIGTERM and SIGINT do."""
        self._stop.set()

    async def run(self, *, grace: float = 5.0) -> int:
        """Serves until a signal or a dead task; returns the process's exit status."""
        server = self._require_server()
        await server.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        log.info("listening on %s", server.address)
        try:
            await self._stop.wait()
            log.info("stopping")
            self.stopping.set()
            await server.set_serving(False)
            for hook in self._on_stop:
                await hook()
            await self._cancel_tasks()
            await server.server.stop(grace)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self._close()
        log.info("stopped")
        return 1 if self.failed else 0

    async def _cancel_tasks(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)

    async def _close(self) -> None:
        for hook in reversed(self._on_close):
            try:
                await hook()
            except Exception as exc:  # the others still close
                log.warning("closing: %s: %s", type(exc).__name__, exc)


def serve(main: Callable[[], Awaitable[int | None]]) -> None:
    """A service's __main__: runs main() and exits with its status."""
    raise SystemExit(asyncio.run(main()) or 0)
