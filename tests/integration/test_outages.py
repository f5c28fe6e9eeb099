"""Postgres or NATS unreachable: clear UNAVAILABLE errors, no crash, recovery by itself.

Uses its own small mesh, since it stops the shared backends."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphmesh.client import api_client
from graphmesh.mesh import Mesh
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import private_mesh, wait_for


@pytest.fixture(scope="module")
def outage_mesh():
    with private_mesh("outage", workers=1, extra_env={"GRAPHMESH_DB_TIMEOUT_SECONDS": "2"}) as mesh:
        yield mesh


def _tiny_request(text: str = "outage") -> pb.CreateRunRequest:
    graph_input = struct_pb2.Struct()
    graph_input.update({"text": text})
    return pb.CreateRunRequest(graph="tiny", input=graph_input)


def _create_eventually(client, timeout: float = 60.0) -> run_pb2.Run:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.runs.CreateRun(_tiny_request(), timeout=10).run
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _wait_completed(client, run_id: str, timeout: float = 60.0) -> run_pb2.Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10).run
        if run.status == run_pb2.RUN_STATUS_COMPLETED:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not complete: {run}")


def _serving(address: str) -> bool:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def _all_addresses(mesh: Mesh) -> list[str]:
    return [mesh.api_address, mesh.review_address, *mesh.worker_addresses]


def test_postgres_down_answers_unavailable_then_recovers(outage_mesh):
    client = api_client(outage_mesh.api_address)
    before = _create_eventually(client)
    _wait_completed(client, before.run_id)

    outage_mesh.postgres.stop()
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.runs.CreateRun(_tiny_request(), timeout=20)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Postgres" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            client.runs.GetRun(pb.GetRunRequest(run_id=before.run_id), timeout=20)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # Every process is alive and says it cannot serve.
        wait_for(lambda: not any(_serving(a) for a in _all_addresses(outage_mesh)), 20,
                 message="every service to report NOT_SERVING")
    finally:
        outage_mesh.postgres.start()
    wait_for(lambda: all(_serving(a) for a in _all_addresses(outage_mesh)), 30,
             message="every service to report SERVING again")

    after = _create_eventually(client)
    _wait_completed(client, after.run_id)
    # The earlier run survived the outage.
    assert client.runs.GetRun(pb.GetRunRequest(run_id=before.run_id)).run.status == run_pb2.RUN_STATUS_COMPLETED


def test_nats_down_answers_unavailable_then_recovers(outage_mesh):
    client = api_client(outage_mesh.api_address)
    outage_mesh.nats.stop()
    try:
        deadline = time.monotonic() + 20
        while True:  # the api notices the disconnect within moments
            try:
                client.runs.CreateRun(_tiny_request(), timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
                assert "NATS" in err.details()
                break
            assert time.monotonic() < deadline, "CreateRun kept succeeding with NATS down"
            time.sleep(0.2)
        wait_for(lambda: not any(_serving(a) for a in _all_addresses(outage_mesh)), 20,
                 message="every service to report NOT_SERVING")
    finally:
        outage_mesh.nats.start()
    wait_for(lambda: all(_serving(a) for a in _all_addresses(outage_mesh)), 30,
             message="every service to report SERVING again")

    run = _create_eventually(client)
    completed = _wait_completed(client, run.run_id)
    events = [r.event for r in client.runs.StreamRun(pb.StreamRunRequest(run_id=completed.run_id), timeout=30)]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].status_changed.status == run_pb2.RUN_STATUS_COMPLETED


def _doctor(mesh: Mesh) -> tuple[int, dict]:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                          "--api", mesh.api_address, "doctor", "--review", mesh.review_address,
                          "--database-url", mesh.database_url, "--nats-url", mesh.nats_url, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, {f["check"]: f for f in json.loads(out.stdout)["findings"]}


def test_doctor_says_plainly_what_is_wrong_while_postgres_is_down(outage_mesh):
    wait_for(lambda: all(_serving(a) for a in _all_addresses(outage_mesh)), 30, message="a healthy mesh")
    code, findings = _doctor(outage_mesh)
    assert code == 0, findings
    assert {"api", "review", "workers", "postgres", "nats", "worker worker-1", "tiny@1"} <= set(findings)

    outage_mesh.postgres.stop()
    try:
        wait_for(lambda: not _serving(outage_mesh.api_address), 20, message="the api to report NOT_SERVING")
        code, findings = _doctor(outage_mesh)
        assert code == 1
        assert not findings["postgres"]["ok"] and "cannot query" in findings["postgres"]["detail"]
        assert not findings["api"]["ok"] and "NOT_SERVING" in findings["api"]["detail"]
        assert findings["nats"]["ok"]
    finally:
        outage_mesh.postgres.start()
    wait_for(lambda: all(_serving(a) for a in _all_addresses(outage_mesh)), 30, message="SERVING again")
    assert _doctor(outage_mesh)[0] == 0
