"""`graphmesh doctor` (issue 12): it compares the live workers with those the deployment
should have, and says plainly, without a traceback, when credentials are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import pytest

from graphmesh.cli import main
from graphmesh.client import api_client, record_deployment
from graphmesh.v1 import graph_service_pb2 as gpb
from helpers import private_mesh, wait_for


@pytest.fixture(scope="module")
def mesh():
    with private_mesh("doctor", workers=2, auth="token") as m:
        yield m


@pytest.fixture(scope="module")
def admin(mesh) -> str:
    return mesh.create_token("doctor-admin", ["admin"])[1]


@pytest.fixture
def recorded(mesh, admin, monkeypatch):
    """The mesh recorded in a CLI config of the test's own, as `graphmesh up` records it."""
    path = Path(tempfile.mkdtemp(prefix="graphmesh-doctor-cli-")) / "config.json"
    for name in ("GRAPHMESH_API", "GRAPHMESH_REVIEW", "GRAPHMESH_TOKEN", "GRAPHMESH_DEPLOYMENT",
                 "GRAPHMESH_DATABASE_URL", "GRAPHMESH_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRAPHMESH_CLI_CONFIG", str(path))
    record_deployment(data_dir=mesh.data_dir, api=mesh.api_address, review=mesh.review_address, token=admin,
                      auth="token", path=path)
    return path


def doctor(capsys, *args: str, before: tuple[str, ...] = ()) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*before, "doctor", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def line(text: str, check: str) -> str:
    found = [ln for ln in text.splitlines() if ln.split()[1:2] == [check]]
    assert found, f"no {check} line in:\n{text}"
    return found[0]


def listed_workers(mesh, token: str) -> set[str]:
    client = api_client(mesh.api_address, token=token)
    try:
        return {w.worker_id for w in client.graphs.ListWorkers(gpb.ListWorkersRequest(), timeout=10).workers}
    except grpc.RpcError:
        return set()
    finally:
        client.close()


def test_doctor_reports_a_missing_worker(mesh, admin, recorded, capsys):
    code, out = doctor(capsys)
    assert code == 0, out
    assert line(out, "workers").startswith("OK"), out

    mesh.stop_service("worker-2", kill=True)
    try:
        # Until its heartbeat ages out the api still lists it; then only worker-1 is left.
        wait_for(lambda: listed_workers(mesh, admin) == {"worker-1"}, 60, interval=0.5,
                 message="the api to list only worker-1")
        code, out = doctor(capsys)
        assert code == 1, out
        workers = line(out, "workers")
        assert workers.startswith("PROBLEM") and "1 of 2" in workers and "worker-2" in workers, out

        # An explicit expectation wins over the record.
        code, out = doctor(capsys, "--expect-workers", "2")
        assert code == 1 and line(out, "workers").startswith("PROBLEM"), out
        code, out = doctor(capsys, "--expect-workers", "1")
        assert line(out, "workers").startswith("OK"), out
    finally:
        mesh.start_service("worker-2")


def test_doctor_says_plainly_when_credentials_are_refused(mesh, recorded, capsys):
    # A process of its own: what a user sees, logging's last-resort output included.
    bad_nats = f"nats://not-the-token@{mesh.config.host}:{mesh.nats.port}"
    done = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                           "doctor", "--nats-url", bad_nats], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    code, out = done.returncode, done.stdout + done.stderr
    assert code == 1, out
    assert "Traceback" not in out, out
    nats = line(out, "nats")
    assert nats.startswith("PROBLEM") and "Authorization Violation" in nats and "--nats-url" in nats, out

    code, out = doctor(capsys, before=("--api", mesh.api_address, "--token", "gm_unknown_token"))
    assert code == 1 and "Traceback" not in out, out
    assert any(ln.startswith("PROBLEM") and "refused the CLI's token" in ln for ln in out.splitlines()), out
