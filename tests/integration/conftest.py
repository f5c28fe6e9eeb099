"""Fixtures shared by the integration modules that drive the shared mesh."""

from __future__ import annotations

import subprocess
import sys

import pytest

from graphmesh.client import api_client
from graphmesh.mesh import REPO_ROOT

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]


@pytest.fixture(scope="module")
def client(mesh):
    c = api_client(mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def gm(mesh):
    """Runs the graphmesh CLI against the shared mesh's api."""
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "--api", mesh.api_address, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=REPO_ROOT)
    return run
