"""Importing graphmesh changes no environment variable; the entry points that fork while they
hold gRPC switch grpc's fork support off before grpc is imported (graphmesh/grpc_fork.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environ, **env}, capture_output=True,
                          text=True, timeout=60, check=True)


REPORT = "import os, sys; print(os.environ.get('GRPC_ENABLE_FORK_SUPPORT'), 'grpc' in sys.modules)"


@pytest.mark.parametrize("module", ["graphmesh", "graphmesh.errors", "graphmesh.mesh", "graphmesh.secrets",
                                    "graphmesh.execution.executor"])
def test_importing_the_library_leaves_the_environment_alone(module):
    assert _python(f"import {module}; {REPORT}").stdout.split()[0] == "None"


@pytest.mark.parametrize("module", ["graphmesh.cli", "services.api.__main__", "services.worker.__main__",
                                    "services.review.__main__", "services.gateway.__main__"])
def test_entry_points_switch_fork_support_off_before_grpc_is_imported(module):
    done = _python(f"import {module}; {REPORT}")
    assert done.stdout.split() == ["false", "True"]
    assert "grpc was imported before" not in done.stderr  # set in time, not after grpc read it


def test_a_users_setting_wins():
    done = _python(f"import graphmesh.cli; {REPORT}", GRPC_ENABLE_FORK_SUPPORT="1")
    assert done.stdout.split()[0] == "1"


def test_a_program_that_imported_grpc_first_is_warned():
    done = _python("import grpc, graphmesh.grpc_fork as f; f.keep_grpc_fork_support_off(); "
                   "f.keep_grpc_fork_support_off()")
    assert done.stderr.count("grpc was imported before GRPC_ENABLE_FORK_SUPPORT was set") == 1
