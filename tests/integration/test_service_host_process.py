"""A real service process whose background task dies logs the traceback, stops in order
and exits 1, so `graphmesh up` or Kubernetes restarts it (NOT_SERVING: tests/unit/test_service_host.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The review process, with its approval expiry loop replaced by one that dies after a while.
SCRIPT = """
import asyncio
import services.review.server as review

async def expiry_that_dies(*args, **kwargs):
    await asyncio.sleep(1.0)
    raise RuntimeError("expiry loop broke")

review.expire_forever = expiry_that_dies
from graphmesh.rpc.host import serve
serve(review.main)
"""


def test_a_service_whose_background_task_dies_exits_1(embedded_pg_nats):
    env = {**os.environ, "GRAPHMESH_DATABASE_URL": embedded_pg_nats.database_url,
           "GRAPHMESH_NATS_URL": embedded_pg_nats.nats_url, "GRAPHMESH_LISTEN": "127.0.0.1:0",
           "GRAPHMESH_AUTH": "none", "GRAPHMESH_TRACING": "0", "GRAPHMESH_METRICS_LISTEN": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "background task approval expiry died" in output, output
    assert "RuntimeError: expiry loop broke" in output, output  # the traceback
    assert "stopped" in output, output
