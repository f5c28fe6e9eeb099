"""Embedded Postgres / NATS lifecycles, and the Mesh supervisor driving stand-in services."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from graphmesh.embedded import EmbeddedNats, EmbeddedPostgres
from graphmesh.mesh import Mesh, MeshConfig
from helpers import wait_for


@pytest.fixture
def tmp_path(tmp_path):
    """As root, a /tmp dir outside pytest-of-root: see _data_root in conftest.py."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="graphmesh-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: list[int], timeout: float = 5) -> bool:
    """True once none of pids runs. Killed orphans are reaped by init asynchronously."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _tree(pid: int) -> list[int]:
    return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]


# -- Postgres ----------------------------------------------------------------------


def test_postgres_restart_keeps_rows_and_stop_leaves_nothing(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pg", fast=True)
    pg.start()
    try:
        assert pg.is_running() and pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/graphmesh"
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        port = pg.port
        pg.stop()
        assert not pg.is_running()
        pg.start()  # same data dir, same port
        assert pg.port == port
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
            pids = _tree(pg.pid)
            assert len(pids) > 1  # postmaster plus its helpers and our backend
    finally:
        pg.stop()
    assert _gone(pids)
    pg.stop()  # idempotent


def test_postgres_survives_kill_and_stale_pidfile(tmp_path):
    data = tmp_path / "pg"
    pg = EmbeddedPostgres(data)  # durable settings: committed rows must survive SIGKILL
    pg.start()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (42)")
    pids = _tree(pg.pid)
    pg._proc.send_signal(signal.SIGKILL)  # crash: postmaster.pid stays behind
    pg._proc.wait()
    assert (data / "postmaster.pid").exists()

    # Make the stale pid point at a live unrelated process, as after a container restart.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        lines[0] = str(sleeper.pid)
        (data / "postmaster.pid").write_text("\n".join(lines) + "\n")
        again = EmbeddedPostgres(data)
        again.start()
        try:
            with psycopg.connect(again.url) as conn:
                assert conn.execute("SELECT id FROM t").fetchall() == [(42,)]
        finally:
            again.stop()
        assert sleeper.poll() is None  # an unrelated process is never touched
    finally:
        sleeper.kill()
        sleeper.wait()
        pg.stop()
    assert _gone(pids)


def test_postgres_takes_over_orphaned_server(tmp_path):
    # A supervisor that died without stopping Postgres leaves a live postmaster behind.
    orphan = EmbeddedPostgres(tmp_path / "pg", fast=True)
    orphan.start()
    orphan_pid = orphan.pid
    fresh = EmbeddedPostgres(tmp_path / "pg", fast=True)
    try:
        fresh.start()
        with psycopg.connect(fresh.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert _gone([orphan_pid])
    finally:
        fresh.stop()
        orphan.stop()


def test_postgres_start_failure_shows_log(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "pg", fast=True, start_timeout=20)
    pg.start()
    try:
        clash = EmbeddedPostgres(tmp_path / "other", port=pg.port, fast=True, start_timeout=20)
        with pytest.raises(RuntimeError, match="postgres exited") as info:
            clash.start()
        assert "log" in str(info.value)
        assert not clash.is_running()
    finally:
        pg.stop()


# -- NATS --------------------------------------------------------------------------


async def _publish(url: str, count: int) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="TEST", subjects=["test.>"])
    for i in range(count):
        await js.publish("test.x", f"m{i}".encode())
    await nc.close()


async def _messages(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info("TEST")
    await nc.close()
    return info.state.messages


def test_nats_jetstream_survives_restart(tmp_path):
    n = EmbeddedNats(tmp_path / "nats")
    n.start()
    try:
        assert n.is_running() and n.url == f"nats://127.0.0.1:{n.port}"
        asyncio.run(_publish(n.url, 5))
        pid = n.pid
        n.stop()
        assert not n.is_running() and _gone([pid])
        n.start()
        assert asyncio.run(_messages(n.url)) == 5
    finally:
        pid = n.pid
        n.stop()
    assert _gone([pid])
    n.stop()  # idempotent


# -- Mesh supervisor with stand-in services ------------------------------------------

FAKE_SERVICE = r'''
import json, os, signal, sys, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

server = grpc.server(futures.ThreadPoolExecutor(4))
h = health.HealthServicer()
h.set("", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(h, server)
server.add_insecure_port(os.environ["GRAPHMESH_LISTEN"])
server.start()
env = {k: v for k, v in os.environ.items() if k.startswith("GRAPHMESH_")}
name = env.get("GRAPHMESH_WORKER_ID") or sys.argv[1]
with open(os.path.join(os.environ["FAKE_OUT"], name + ".json"), "w") as f:
    json.dump({"pid": os.getpid(), "env": env}, f)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
server.stop(1).wait()
print("clean exit", flush=True)
'''


def test_mesh_supervises_services(tmp_path):
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    out = tmp_path / "out"
    out.mkdir()
    commands = {kind: [sys.executable, str(script), kind] for kind in ("api", "review", "worker")}
    config = MeshConfig(
        data_dir=tmp_path / "mesh", api_port=0, review_port=0, worker_base_port=0, workers=2,
        fast_postgres=True, extra_env={"FAKE_OUT": str(out)}, ready_timeout=30,
    )
    mesh = Mesh(config, commands=commands)
    with mesh:
        assert mesh.service_names == ["api", "review", "worker-1", "worker-2"]
        addresses = [mesh.api_address, mesh.review_address, *mesh.worker_addresses]
        assert len(set(addresses)) == 4  # distinct listeners
        w1 = json.loads((out / "worker-1.json").read_text())["env"]
        assert w1["GRAPHMESH_LISTEN"] == mesh.worker_addresses[0]
        assert w1["GRAPHMESH_DATABASE_URL"] == mesh.database_url
        assert w1["GRAPHMESH_NATS_URL"] == mesh.nats_url
        assert w1["GRAPHMESH_WORKER_CONCURRENCY"] == "8"
        api_env = json.loads((out / "api.json").read_text())["env"]
        assert "GRAPHMESH_WORKER_ID" not in api_env
        # The supervisor resolves the manifest once (here the bundled examples) for every service.
        assert api_env["GRAPHMESH_CONFIG"] == w1["GRAPHMESH_CONFIG"] == str(mesh.manifest)

        with psycopg.connect(mesh.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("graphmesh",)

        old = mesh.pid("api")
        mesh.restart_service("api")
        assert mesh.pid("api") not in (None, old) and _gone([old])
        old = mesh.pid("worker-1")
        mesh.stop_service("worker-1", kill=True)
        assert mesh.pid("worker-1") is None and _gone([old])
        mesh.start_service("worker-1")
        pids = [mesh.pid(n) for n in mesh.service_names] + [mesh.postgres.pid, mesh.nats.pid]
        pids += [c.pid for c in psutil.Process(mesh.postgres.pid).children(recursive=True)]
    assert _gone(pids)
    assert "clean exit" in mesh.log_path("review").read_text()  # SIGTERM, not SIGKILL


def test_mesh_reports_failing_service(tmp_path):
    bad = [sys.executable, "-c", "import sys; print('boom: no config'); sys.exit(3)"]
    ok = tmp_path / "fake_service.py"
    ok.write_text(FAKE_SERVICE)
    (tmp_path / "out").mkdir()
    config = MeshConfig(
        data_dir=tmp_path / "mesh", api_port=0, review_port=0, worker_base_port=0, workers=1,
        fast_postgres=True, extra_env={"FAKE_OUT": str(tmp_path / "out")}, ready_timeout=30,
    )
    good = [sys.executable, str(ok)]
    mesh = Mesh(config, commands={"api": good + ["api"], "review": bad, "worker": good + ["worker"]})
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="review exited \\(code 3\\)") as info:
        mesh.start()
    assert "boom: no config" in str(info.value)
    assert time.monotonic() - started < 25  # fails fast, not at the deadline
    assert mesh.postgres is not None and not mesh.postgres.is_running()
    assert not mesh.nats.is_running() and mesh.pid("api") is None


# -- lifetimes and secrets (issue 12) ---------------------------------------------------


def test_nats_token_is_not_on_the_command_line(tmp_path):
    token = "s3cret-token-for-this-test"
    n = EmbeddedNats(tmp_path / "nats", auth_token=token)
    n.start()
    try:
        cmdline = Path(f"/proc/{n.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline, cmdline  # `ps` shows this to every user of the machine
        assert oct(n.config_path.stat().st_mode & 0o777) == "0o600"
        assert asyncio.run(_messages_or_error(n.url)) == "connected"
        refused = asyncio.run(_messages_or_error(f"nats://wrong@127.0.0.1:{n.port}"))
        assert "authorization" in refused.lower()
    finally:
        n.stop()


async def _messages_or_error(url: str) -> str:
    import nats

    async def quiet(_exc):
        pass

    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
                                error_cb=quiet)
    except Exception as exc:
        return str(exc)
    await nc.close()
    return "connected"


STARTER = r'''
import sys, time
from pathlib import Path
from graphmesh.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(Path(sys.argv[1]), fast=True)
pg.start()
print(pg.pid, flush=True)
time.sleep(600)
'''


def test_postgres_goes_down_when_its_starter_is_killed(tmp_path):
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    starter = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pg")], stdout=subprocess.PIPE,
                               text=True)
    postmaster = None
    try:
        postmaster = int(starter.stdout.readline())
        assert _alive(postmaster)
        starter.send_signal(signal.SIGKILL)  # no atexit, no stop(): only the kernel can tell Postgres
        starter.wait()
        assert _gone([postmaster], timeout=60), "the postmaster outlived the process that started it"
    finally:
        starter.kill()
        starter.wait()
        if postmaster is not None and _alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)  # leave no orphan to later tests


def test_supervised_mesh_restarts_what_dies_but_not_what_was_stopped(tmp_path):
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    out = tmp_path / "out"
    out.mkdir()
    commands = {kind: [sys.executable, str(script), kind] for kind in ("api", "review", "worker")}
    config = MeshConfig(
        data_dir=tmp_path / "mesh", api_port=0, review_port=0, worker_base_port=0, workers=2,
        fast_postgres=True, extra_env={"FAKE_OUT": str(out)}, ready_timeout=30, supervise=True,
        restart_backoff=0.1,
    )
    lines: list[str] = []
    mesh = Mesh(config, commands=commands, report=lines.append)
    with mesh:
        assert mesh.supervising
        assert mesh.restarts == {"api": 0, "review": 0, "worker-1": 0, "worker-2": 0, "postgres": 0, "nats": 0}
        record = json.loads((mesh.data_dir / "mesh.json").read_text())
        assert record["workers"] == ["worker-1", "worker-2"]

        # A service stopped through the API stays stopped...
        mesh.stop_service("worker-1")
        # ... while one that dies comes back, twice (the second after a longer backoff).
        for attempt in (1, 2):
            old = mesh.kill("worker-2")
            wait_for(lambda: mesh.restarts["worker-2"] == attempt and mesh.pid("worker-2") not in (None, old),
                     30, message=f"worker-2's restart {attempt}")
        # The supervisor looked at worker-1 on its way to worker-2, and left it alone.
        assert mesh.pid("worker-1") is None and mesh.restarts["worker-1"] == 0
        assert any("worker-2 exited (killed by SIGKILL)" in line for line in lines), lines
        assert any("worker-2 restarted" in line and "restart 2" in line for line in lines), lines

        old = mesh.kill("postgres")
        wait_for(lambda: mesh.restarts["postgres"] == 1 and mesh.postgres.is_running(), 60,
                 message="postgres to be restarted")
        assert mesh.postgres.pid != old
        with psycopg.connect(mesh.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        old = mesh.kill("nats")
        wait_for(lambda: mesh.restarts["nats"] == 1 and mesh.nats.is_running(), 60, message="nats to be restarted")
        assert mesh.nats.pid != old
        assert mesh.restarts["api"] == mesh.restarts["review"] == 0

        mesh.start_service("worker-1")  # supervised again from here on
        old = mesh.kill("worker-1")
        wait_for(lambda: mesh.restarts["worker-1"] == 1 and mesh.pid("worker-1") not in (None, old), 30,
                 message="worker-1's restart")
        pids = [mesh.pid(n) for n in mesh.service_names] + [mesh.postgres.pid, mesh.nats.pid]
    assert not mesh.supervising
    assert _gone(pids)
