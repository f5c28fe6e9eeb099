"""`graphmesh up`: the main command starts everything, runs the demo, stops cleanly; a
second start on the same data directory finds the earlier runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf import struct_pb2

from graphmesh.client import api_client
from graphmesh.mesh import Mesh, MeshConfig
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import wait_for

RUN_ID = re.compile(r"demo: research_assistant run ([0-9a-f-]{36})")


@pytest.fixture
def data_dir():
    root = Path(tempfile.mkdtemp(prefix="graphmesh-up-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_up_runs_demo_then_a_second_start_finds_it(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHMESH_")}
    env["GRAPHMESH_CLI_CONFIG"] = str(data_dir / "cli-config.json")  # not the real user's config
    proc = subprocess.run(
        [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
         "up", "--data-dir", str(data_dir), "--api-port", "0", "--review-port", "0", "--review-web-port", "0",
         "--worker-base-port", "0", "--demo", "--exit-after-demo"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for name in ("postgres", "nats", "api", "review", "worker-1", "worker-2", "logs"):
        assert re.search(rf"^\s+{name}\s", proc.stdout, re.M), f"{name} missing from the table:\n{out}"
    assert "ended COMPLETED" in out and "report:" in out, out
    run_id = RUN_ID.search(out).group(1)
    for log in ("api", "review", "worker-1", "worker-2", "postgres", "nats"):
        assert (data_dir / "logs" / f"{log}.log").exists()

    # Authentication is on: the demo ran with the local admin token `up` made and saved.
    token = (data_dir / "admin-token").read_text().strip()
    assert oct((data_dir / "admin-token").stat().st_mode & 0o777) == "0o600"
    recorded = json.loads((data_dir / "cli-config.json").read_text())
    assert recorded["deployments"][str(data_dir)]["token"] == token and recorded["current"] == str(data_dir)
    assert recorded["token"] == token  # the single-entry fields an older CLI reads
    assert f"recorded as deployment '{data_dir.name}'" in out
    assert "GRAPHMESH_TOKEN" in out

    # Nothing left running: the same data directory starts again and has the run.
    mesh = Mesh(MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0, workers=1))
    with mesh:
        with pytest.raises(grpc.RpcError) as refused:
            api_client(mesh.api_address, token="").runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert mesh.token_is_active(token)  # the token outlives a restart
        run = api_client(mesh.api_address, token=token).runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run
        assert run.status == run_pb2.RUN_STATUS_COMPLETED
        assert run.graph == "research_assistant"


def test_external_postgres_and_nats_are_used_instead_of_embedded(embedded_pg_nats, data_dir):
    # `graphmesh migrate` prepares external servers; then the mesh starts none of its own.
    migrate = subprocess.run(
        [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())", "migrate",
         "--database-url", embedded_pg_nats.database_url, "--nats-url", embedded_pg_nats.nats_url],
        capture_output=True, text=True, timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    config = MeshConfig(data_dir=data_dir, api_port=0, review_port=0, worker_base_port=0, workers=1,
                        database_url=embedded_pg_nats.database_url, nats_url=embedded_pg_nats.nats_url,
                        auth="none")
    with Mesh(config) as mesh:
        assert mesh.postgres is None and mesh.nats is None
        assert not (data_dir / "postgres").exists() and not (data_dir / "nats").exists()
        client = api_client(mesh.api_address)
        graph_input = struct_pb2.Struct()
        graph_input.update({"text": "external"})
        run = client.runs.CreateRun(pb.CreateRunRequest(graph="tiny", input=graph_input)).run
        events = [r.event for r in client.runs.StreamRun(pb.StreamRunRequest(run_id=run.run_id), timeout=60)]
        assert events[-1].status_changed.status == run_pb2.RUN_STATUS_COMPLETED


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children(pid: int, match: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if match in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_up_restarts_a_dead_worker_and_a_killed_up_leaves_no_postgres(data_dir):
    """A real `graphmesh up`: it restarts a worker that dies and says so; its NATS token is not
    on nats-server's command line; SIGKILLed, it leaves nothing running: not even Postgres,
    which no PDEATHSIG of a service reaches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHMESH_")}
    env["XDG_CONFIG_HOME"] = str(data_dir / "xdg")  # not the real user's CLI config
    up = subprocess.Popen(
        [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
         "up", "--data-dir", str(data_dir / "mesh"), "--api-port", "0", "--review-port", "0", "--review-web-port", "0",
         "--worker-base-port", "0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(up.stdout.readline, "")), daemon=True).start()
    output = lambda: "".join(lines)  # noqa: E731
    postmaster = None
    try:
        wait_for(lambda: "press Ctrl-C to stop" in output() or up.poll() is not None, 180,
                 message=lambda: f"up to start:\n{output()}")
        assert up.poll() is None, output()
        assert "supervising" in output()

        nats = _children(up.pid, "nats-server")
        assert len(nats) == 1, output()
        token = (data_dir / "mesh" / "nats-token").read_text().strip()
        assert token and token not in Path(f"/proc/{nats[0].pid}/cmdline").read_bytes().decode()

        [worker] = _children(up.pid, "services.worker")
        worker.kill()
        wait_for(lambda: "worker-1 restarted" in output(), 60, message=lambda: f"up to restart worker-1:\n{output()}")
        assert "worker-1 exited (killed by SIGKILL)" in output()
        [again] = _children(up.pid, "services.worker")
        assert again.pid != worker.pid

        postmaster = int((data_dir / "mesh" / "postgres" / "postmaster.pid").read_text().split()[0])
        assert _alive(postmaster)
        leftovers = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        up.send_signal(signal.SIGKILL)  # no Ctrl-C, no atexit: only the kernel knows
        up.wait()
        wait_for(lambda: not _alive(postmaster), 60, message="the postmaster to go down with up")
        wait_for(lambda: not any(_alive(p) for p in leftovers), 60,
                 message=lambda: f"up's processes to go: {[p for p in leftovers if _alive(p)]}")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if postmaster is not None and _alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)  # do not leave it to the next test
