"""`graphmesh whoami` and `graphmesh tokens create|list|revoke` against a mesh with tokens,
and the library's async client carrying a token on unary and streaming calls."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import private_mesh, wait_for


@pytest.fixture(scope="module")
def tmesh():
    with private_mesh("cli-tokens", workers=1, auth="token") as mesh:
        yield mesh


def _gm(mesh, token: str, *args):
    env = {**os.environ, "GRAPHMESH_TOKEN": token, "GRAPHMESH_CLI_CONFIG": os.devnull}
    return subprocess.run([sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())",
                           "--api", mesh.api_address, *args], capture_output=True, text=True, timeout=60, env=env)


def test_token_lifecycle_from_the_cli(tmesh):
    _, admin = tmesh.create_token("ada", ["admin"])
    who = _gm(tmesh, admin, "whoami")
    assert who.returncode == 0 and who.stdout.startswith("ada") and "admin" in who.stdout

    made = _gm(tmesh, admin, "tokens", "create", "sam", "--role", "submitter", "--graph", "tiny")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    token_id = made.stdout.split()[1]
    assert token.startswith("gm_")
    assert _gm(tmesh, token, "whoami").stdout.split()[0] == "sam"

    listed = _gm(tmesh, admin, "tokens", "list")
    assert token_id in listed.stdout and token not in listed.stdout

    denied = _gm(tmesh, token, "tokens", "list")
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr

    assert _gm(tmesh, admin, "tokens", "revoke", token_id).returncode == 0
    wait_for(lambda: "UNAUTHENTICATED" in _gm(tmesh, token, "whoami").stderr, 30,
             message="the revoked token to stop working")
    bad = _gm(tmesh, admin, "tokens", "create", "x", "--role", "wizard")
    assert bad.returncode == 1 and "INVALID_ROLES" in bad.stderr


def test_async_client_sends_its_token_on_streams_too(tmesh):
    import asyncio

    from graphmesh.client import async_api_client
    from graphmesh.v1 import run_pb2
    from graphmesh.v1 import run_service_pb2 as pb
    from helpers import struct

    _, token = tmesh.create_token("amy", ["submitter"])

    async def run_and_stream() -> list:
        client = async_api_client(tmesh.api_address, token=token)
        try:
            run = (await client.runs.CreateRun(pb.CreateRunRequest(graph="tiny", input=struct({"text": "aio"})),
                                               timeout=30)).run
            return [r.event async for r in client.runs.StreamRun(pb.StreamRunRequest(run_id=run.run_id),
                                                                 timeout=60)]
        finally:
            await client.channel.close()

    events = asyncio.run(run_and_stream())
    assert events[-1].status_changed.status == run_pb2.RUN_STATUS_COMPLETED
