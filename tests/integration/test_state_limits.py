"""limits.max_state_bytes: a step that leaves the serialized state over the limit FAILS
the run with STATE_TOO_LARGE naming the limit and the size; the refused checkpoint is not
written (the thread keeps its last state within the limit) and a mutating node after it
never runs. Graph `grower` (tests/fixtures/security.yaml, limit 4096 bytes)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from graphmesh.client import api_client
from helpers import COMPLETED, FAILED, create_run, new_thread, private_mesh, thread_values, wait_status

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "security.yaml"
LIMIT = 4096


@pytest.fixture(scope="module")
def smesh():
    with private_mesh("state-limits", manifest=MANIFEST, workers=1) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def client(smesh):
    c = api_client(smesh.api_address)
    yield c
    c.close()


def _grow(client, tmp_path, chunk: int, target: int):
    marker = tmp_path / f"published-{uuid.uuid4()}"
    run = create_run(client, "grower", {"chunk": chunk, "target": target, "marker": str(marker)},
                     thread_id=new_thread("grow"))
    return wait_status(client, run.run_id, {COMPLETED, FAILED}), marker


def _size_in(message: str) -> int:
    found = re.search(r"state is (\d+) bytes", message)
    assert found, message
    return int(found.group(1))


def test_state_growing_step_by_step_fails_the_run_at_the_limit(client, tmp_path):
    final, marker = _grow(client, tmp_path, chunk=1000, target=20)
    assert final.status == FAILED, final
    assert final.error.code == "STATE_TOO_LARGE"
    assert f"max_state_bytes={LIMIT}" in final.error.message
    assert LIMIT < _size_in(final.error.message) < LIMIT + 1200  # failed at the step that crossed it
    # The refused checkpoint was not written: the thread holds the last state within the limit.
    chunks = thread_values(client, final.thread_id)["chunks"]
    assert 0 < len(chunks) < 20 and sum(map(len, chunks)) <= LIMIT
    assert not marker.exists()


def test_a_mutating_node_never_runs_after_an_oversized_step(client, tmp_path):
    final, marker = _grow(client, tmp_path, chunk=10_000, target=1)  # one step over, then publish
    assert final.status == FAILED and final.error.code == "STATE_TOO_LARGE", final
    assert _size_in(final.error.message) > 10_000
    assert not marker.exists(), "publish ran after its run's state went over the limit"


def test_state_within_the_limit_completes(client, tmp_path):
    final, marker = _grow(client, tmp_path, chunk=100, target=3)
    assert final.status == COMPLETED, final.error
    assert marker.read_text() == "published"
    assert thread_values(client, final.thread_id)["published"] is True
