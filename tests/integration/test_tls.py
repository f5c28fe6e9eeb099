"""Mutual TLS: services started with certificates from `graphmesh certs create` serve only
TLS clients that present a certificate signed by the CA."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from graphmesh.certs import client_env
from graphmesh.client import api_client
from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, create_run, private_mesh, wait_status


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    out = subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                          "certs", "create", "--dir", str(directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "GRAPHMESH_TLS_CLIENT_CA_FILE" in out.stdout and "GRAPHMESH_TLS_CA_FILE" in out.stdout
    assert oct((directory / "client-key.pem").stat().st_mode & 0o777) == "0o600"
    return directory


@pytest.fixture(scope="module")
def tls_mesh(certs):
    with private_mesh("tls", workers=1, tls_dir=certs) as mesh:
        yield mesh


def test_a_client_with_a_certificate_runs_a_graph(tls_mesh, certs, monkeypatch):
    for key, value in client_env(certs).items():
        monkeypatch.setenv(key, value)
    client = api_client(tls_mesh.api_address)
    run = create_run(client, "tiny", {"text": "over mutual TLS"})
    wait_status(client, run.run_id, COMPLETED)


@pytest.mark.parametrize("setup", ["plaintext", "tls without a client certificate"])
def test_other_clients_are_turned_away(tls_mesh, certs, monkeypatch, setup):
    if setup != "plaintext":
        for key, value in client_env(certs, with_certificate=False).items():
            monkeypatch.setenv(key, value)
    with pytest.raises(grpc.RpcError) as refused:
        api_client(tls_mesh.api_address).runs.ListRuns(pb.ListRunsRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_embedded_nats_admits_only_the_mesh(tls_mesh):
    """Service-to-service over NATS authenticates too: the embedded server wants the
    mesh's token (kept owner-only in the data directory), which the URL carries."""
    import asyncio
    from urllib.parse import urlsplit

    import nats

    parts = urlsplit(tls_mesh.nats_url)
    assert parts.username  # the token
    assert oct((tls_mesh.data_dir / "nats-token").stat().st_mode & 0o777) == "0o600"

    async def connect(url: str) -> None:
        nc = await nats.connect(url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0)
        await nc.close()

    asyncio.run(connect(tls_mesh.nats_url))
    with pytest.raises(Exception) as refused:
        asyncio.run(connect(f"nats://{parts.hostname}:{parts.port}"))
    assert "authorization" in str(refused.value).lower()
