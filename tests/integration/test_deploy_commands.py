"""The commands a deployment runs, each alone against real Postgres and NATS: `graphmesh
migrate` (refuses a database that is not UTF8; makes or registers the first admin token,
once), `graphmesh serve SERVICE` (one service in the foreground, as a container runs it) and
`grpc-health-check` (a container's health check)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from graphmesh.auth.tokens import TokenStore
from graphmesh.db import make_pool
from graphmesh.embedded import free_port
from graphmesh.store import RunStore
from helpers import wait_for

BIN = Path(sys.executable).parent


def _run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def _new_database(backends, encoding: str = "UTF8") -> str:
    name = f"gm_{encoding.lower()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(backends.postgres.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    return backends.postgres.admin_url.rsplit("/", 1)[0] + f"/{name}"


def _migrate(backends, url: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run("graphmesh", "migrate", "--database-url", url, "--nats-url", backends.nats_url, *extra, env=env)


def _principal(url: str, token: str):
    async def look_up():
        async with make_pool(url, max_size=2) as pool:
            return await TokenStore(RunStore(pool)).principal(token)

    return asyncio.run(look_up())


def test_migrate_refuses_a_database_that_is_not_utf8(embedded_pg_nats):
    url = _new_database(embedded_pg_nats, "SQL_ASCII")
    done = _migrate(embedded_pg_nats, url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is encoded SQL_ASCII; graphmesh needs UTF8" in done.stderr and "Traceback" not in done.stderr
    with psycopg.connect(url) as conn:  # nothing was created in it
        assert conn.execute("SELECT to_regclass('gm_runs')").fetchone()[0] is None


def test_migrate_makes_the_first_admin_token_once(embedded_pg_nats, tmp_path):
    url = _new_database(embedded_pg_nats)
    token_file = tmp_path / "admin-token"
    first = _migrate(embedded_pg_nats, url, "--admin", "ops", "--token-file", str(token_file))
    assert first.returncode == 0, first.stdout + first.stderr
    token = token_file.read_text().strip()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600" and token not in first.stdout
    principal = _principal(url, token)
    assert principal.name == "ops" and "admin" in principal.roles
    again = _migrate(embedded_pg_nats, url, "--admin", "ops")  # every rollout runs migrate again
    assert again.returncode == 0 and "exists; none made" in again.stdout, again.stdout + again.stderr
    assert "gm_" not in again.stdout  # no second token printed


def test_migrate_registers_a_bootstrap_token_from_a_secret(embedded_pg_nats):
    url = _new_database(embedded_pg_nats)
    secret = f"from-a-kubernetes-secret-{uuid.uuid4().hex}"
    env = {"GRAPHMESH_BOOTSTRAP_TOKEN": secret}
    done = _migrate(embedded_pg_nats, url, "--admin", "platform", env=env)
    assert done.returncode == 0 and "registered from $GRAPHMESH_BOOTSTRAP_TOKEN" in done.stdout, done.stderr
    assert secret not in done.stdout + done.stderr
    assert _principal(url, secret).name == "platform"
    assert "exists; none made" in _migrate(embedded_pg_nats, url, env=env).stdout
    short = _migrate(embedded_pg_nats, url, env={"GRAPHMESH_BOOTSTRAP_TOKEN": "too-short"})
    assert short.returncode == 1 and "at least 32 characters" in short.stderr


def test_serve_runs_one_service_that_the_health_check_sees(embedded_pg_nats):
    url = _new_database(embedded_pg_nats)
    assert _migrate(embedded_pg_nats, url).returncode == 0
    port = free_port()
    env = {**os.environ, "GRAPHMESH_DATABASE_URL": url, "GRAPHMESH_NATS_URL": embedded_pg_nats.nats_url,
           "GRAPHMESH_LISTEN": f"127.0.0.1:{port}", "GRAPHMESH_AUTH": "none"}
    proc = subprocess.Popen([str(BIN / "graphmesh"), "serve", "review"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _run("grpc-health-check", f"127.0.0.1:{port}").returncode == 0, timeout=60,
                 message="the review service SERVING")
        check = _run("grpc-health-check", f"127.0.0.1:{port}", "--service", "graphmesh.v1.ReviewService")
        assert check.returncode == 0 and "SERVING" in check.stdout
        proc.send_signal(signal.SIGTERM)  # `serve` exec'd the service: the signal reaches it
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    down = _run("grpc-health-check", f"127.0.0.1:{port}", "--timeout", "1")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


@pytest.mark.parametrize("service", ["graphmesh.v1.NoSuchService"])
def test_the_health_check_fails_for_a_service_the_server_does_not_serve(mesh, service):
    done = _run("grpc-health-check", mesh.api_address, "--service", service)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr
    assert _run("grpc-health-check", mesh.api_address).returncode == 0


def test_a_worker_listening_on_all_interfaces_advertises_an_address_others_can_dial(embedded_pg_nats):
    """Registered as 0.0.0.0:port, `doctor` and the api dialled themselves and reported a false
    OK; a worker now registers its host's IP (or GRAPHMESH_ADVERTISE_ADDRESS)."""
    url = _new_database(embedded_pg_nats)
    assert _migrate(embedded_pg_nats, url).returncode == 0
    port = free_port()
    env = {**os.environ, "GRAPHMESH_DATABASE_URL": url, "GRAPHMESH_NATS_URL": embedded_pg_nats.nats_url,
           "GRAPHMESH_LISTEN": f"0.0.0.0:{port}", "GRAPHMESH_AUTH": "none", "GRAPHMESH_WORKER_ID": "w-any"}
    proc = subprocess.Popen([str(BIN / "graphmesh"), "serve", "worker"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def registered():
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT address FROM gm_workers WHERE worker_id = 'w-any'").fetchone()
            return row and row[0]

        address = wait_for(registered, timeout=60, message="the worker in gm_workers")
        host = address.rsplit(":", 1)[0]
        assert host not in ("0.0.0.0", "[::]", "::") and address.endswith(f":{port}")
        assert _run("grpc-health-check", address).returncode == 0  # what doctor dials answers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
