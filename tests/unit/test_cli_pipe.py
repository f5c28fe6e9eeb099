"""CLI output into a pipe whose reader is gone (`graphmesh runs list | head -1`): the CLI
stops quietly, without a BrokenPipeError traceback (graphmesh/cli/__init__.py main)."""

from __future__ import annotations

import os
import subprocess
import sys

from graphmesh.mesh import REPO_ROOT

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]


def test_a_closed_pipe_stops_the_cli_quietly(tmp_path):
    env = {**os.environ, "GRAPHMESH_CLI_CONFIG": str(tmp_path / "config.json")}
    # The reader end is closed before the CLI (a second to start) writes its first line.
    proc = subprocess.Popen([*CLI, "deployments", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO_ROOT, env=env)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    stderr = err.decode()
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert proc.returncode == 141, (proc.returncode, stderr)


def test_output_into_head_through_a_shell(tmp_path):
    env = {**os.environ, "GRAPHMESH_CLI_CONFIG": str(tmp_path / "config.json")}
    command = " ".join(f"'{part}'" for part in CLI) + " deployments list | head -c 0"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=env, timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode in (0, 141), (done.returncode, done.stderr)
