"""`graphmesh up`'s own supervision under load (issue 12): with MeshConfig(supervise=True), as
`up` runs it, the api, a busy worker, the embedded Postgres and the embedded NATS are each
SIGKILLed in turn, and nothing but the mesh's supervisor brings them back. Every accepted run
completes (lost 0), no completed node runs again (real duplicates 0) and each thread's state
is the completed run's (its trail lists every node once). Judged as in test_faults.py; the
figures join the fault suite's table. Waits are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import psycopg
import pytest
from test_faults import (
    CREATE_TABLES,
    ENV,
    MANIFEST,
    READY_TIMEOUT,
    Batch,
    active_runs,
    add_runs,
    assert_no_loss,
    completed,
    judge,
    record,
    serving,
    wait_batch,
)

from graphmesh.client import api_client
from graphmesh.mesh import Mesh, MeshConfig
from helpers import wait_for

WORKERS = 2
CONCURRENCY = 4


@pytest.fixture(scope="module")
def supervised_mesh(tmp_path_factory):
    # As `up` runs it: supervised, and with Postgres' durable settings. The suite's usual
    # fast_postgres (synchronous_commit=off) loses the last acknowledged commits when the
    # postmaster is SIGKILLed, which is that setting's trade, not the mesh's.
    root = tempfile.mkdtemp(prefix="graphmesh-up-restarts-")
    m = Mesh(MeshConfig(data_dir=root, api_port=0, review_port=0, worker_base_port=0, workers=WORKERS,
                        worker_concurrency=CONCURRENCY, manifest=MANIFEST, extra_env=ENV, auth="none",
                        supervise=True))
    try:
        m.start()
        with psycopg.connect(m.database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLES)
        yield m
    finally:
        m.stop()
        shutil.copytree(m.log_dir, tmp_path_factory.getbasetemp() / "up_restart_logs", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)


def test_up_restarts_a_killed_api_worker_postgres_and_nats(supervised_mesh, fault_figures):
    mesh = supervised_mesh
    figures = fault_figures("up restarts")
    client = api_client(mesh.api_address)
    lines: list[str] = []
    mesh.report = lines.append  # what `up` prints: which process, its exit status, the attempt
    batch = Batch("up-restarts")
    killed_pids: set[int] = set()
    kills = outages = 0
    back_at = None
    try:
        add_runs(client, batch, 12, 0.3, 0.9)
        for victim in ("api", "worker", "postgres", "nats"):
            # Some progress first, so each fault lands on a mesh at work.
            done = completed(wait_batch(client, batch, until=lambda s: completed(s) >= 2, timeout=120))
            name = victim
            if victim == "worker":
                busy = [n for n in mesh.service_names if n.startswith("worker") and (active_runs(mesh, n) or 0)]
                name = busy[0] if busy else "worker-1"
            before = mesh.restarts[name]
            pid = mesh.kill(name)
            if name in ("postgres", "nats"):
                outages += 1
            else:
                kills += 1
                killed_pids.add(pid)
            figures.notes.append(f"SIGKILLed {name} (pid {pid}) with {done} run(s) of the batch completed")
            wait_for(lambda: mesh.restarts[name] > before, READY_TIMEOUT, interval=0.2,
                     message=lambda: f"the supervisor to restart {name}; it said: {lines}")
            wait_for(lambda: all(serving(mesh.address(n)) for n in mesh.service_names), READY_TIMEOUT,
                     interval=0.2, message=f"every service SERVING again after {name} came back")
            back_at = time.monotonic()
            add_runs(client, batch, 6, 0.3, 0.9)  # the load goes on after each restart

        final = wait_batch(client, batch)
        figures.kills, figures.outages = kills, outages
        figures.recover_seconds = time.monotonic() - back_at
        figures.notes.append("restarts: " + ", ".join(f"{n} {c}" for n, c in mesh.restarts.items() if c))
        verdict = judge(mesh, client, batch, final, killed_pids=killed_pids, outage=True)
        record(figures, mesh, batch, verdict)
    finally:
        client.close()

    for name in ("api", "postgres", "nats"):
        assert mesh.restarts[name] >= 1, mesh.restarts
        assert any(line.startswith(f"{name} exited (killed by SIGKILL)") for line in lines), lines
        assert any(line.startswith(f"{name} restarted") for line in lines), lines
    assert sum(mesh.restarts[n] for n in mesh.service_names if n.startswith("worker")) >= 1, mesh.restarts
    assert_no_loss(verdict)
    # A kill or a backend going away cuts off at most the node executions in flight then.
    assert verdict.duplicated <= (kills + outages) * WORKERS * CONCURRENCY, verdict.describe()
