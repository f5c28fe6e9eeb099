"""`graphmesh runs stream` and `runs create --stream` follow a run's latest attempt: after a
RetryRun the same run id has a new attempt, and the CLI shows it and exits 0 only when that
attempt completed (tests/fixtures/ops_graphs.py fails a node on demand). `runs create
--stream` follows with the same function (graphmesh/cli/runs.py follow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from graphmesh.client import api_client
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import run_service_pb2 as pb
from helpers import COMPLETED, FAILED, new_thread, private_mesh, wait_status

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "ops.yaml"
PIPELINE = "ops_pipeline"
# The table the fixture graphs write to (the same as ops_graphs.CREATE_TABLE).
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS ops_executions (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    thread_id text NOT NULL,
    node text NOT NULL,
    event text NOT NULL,
    attempt integer NOT NULL,
    worker text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
)
"""


@pytest.fixture(scope="module")
def ops_mesh():
    with private_mesh("cli-attempts", manifest=MANIFEST, workers=1) as m:
        with psycopg.connect(m.database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
        yield m


@pytest.fixture(scope="module")
def client(ops_mesh):
    c = api_client(ops_mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def gm(ops_mesh):
    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "--api", ops_mesh.api_address, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=REPO_ROOT)
    return run


def failing_run(client, gm, fail_attempts: int, **extra) -> str:
    """A pipeline run whose transform fails on attempts up to `fail_attempts`; attempt 1 FAILED."""
    inp = {"tag": "cli", "fail": "transform", "fail_with": "ValueError", "fail_attempts": fail_attempts, **extra}
    created = gm("runs", "create", PIPELINE, "--input", json.dumps(inp), "--thread", new_thread("cli-att"), "--json")
    assert created.returncode == 0, created.stderr
    run_id = json.loads(created.stdout)["run_id"]
    assert wait_status(client, run_id, {FAILED, COMPLETED}).status == FAILED
    return run_id


def statuses(stdout: str) -> list[str]:
    return [json.loads(line)["status_changed"]["status"].removeprefix("RUN_STATUS_")
            for line in stdout.splitlines() if "status_changed" in line]


def test_stream_after_a_retry_follows_the_new_attempt(client, gm):
    # publish holds a while on its first execution (in attempt 2), so the stream usually
    # finds attempt 2 still running when attempt 1's FAILED event ends the first stream.
    run_id = failing_run(client, gm, 1, hold="publish", hold_seconds=3)
    retried = gm("runs", "retry", run_id, "--json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["attempt"] == 2, retried.stderr

    streamed = gm("runs", "stream", run_id)
    assert streamed.returncode == 0, streamed.stdout + streamed.stderr
    assert "FAILED" in streamed.stdout and streamed.stdout.rstrip().endswith("COMPLETED")
    assert f"run {run_id} ended COMPLETED (attempt 2)" in streamed.stderr
    assert "ok publish" in streamed.stdout  # attempt 2's node events

    events = [json.loads(line) for line in gm("runs", "stream", run_id, "--json").stdout.splitlines()]
    seqs = [int(e["sequence"]) for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1  # every event once, in order, across attempts
    assert statuses("\n".join(json.dumps(e) for e in events))[-1] == "COMPLETED"
    assert "FAILED" in statuses("\n".join(json.dumps(e) for e in events))
    assert wait_status(client, run_id, COMPLETED).attempt == 2


def test_stream_exits_1_when_the_latest_attempt_fails_too(client, gm):
    run_id = failing_run(client, gm, 2)
    client.runs.RetryRun(pb.RetryRunRequest(run_id=run_id), timeout=30)
    streamed = gm("runs", "stream", run_id, "--json")
    assert streamed.returncode == 1, streamed.stdout + streamed.stderr
    assert statuses(streamed.stdout).count("FAILED") == 2 and statuses(streamed.stdout)[-1] == "FAILED"
    readable = gm("runs", "stream", run_id)
    assert readable.returncode == 1 and f"run {run_id} ended FAILED (attempt 2)" in readable.stderr
