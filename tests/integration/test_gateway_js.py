"""LangGraph's JS SDK (npm @langchain/langgraph-sdk) under Node against the gateway: a stream
cut off mid-run and resumed with Last-Event-ID through the other gateway replica.

tests/js/stream_reconnect.mjs starts runs.stream on the `chat` graph (streamMode values and
messages-tuple), drops the connection after a few events, rejoins with runs.joinStream and the
last event id, then reads the finished run again from the start. The two parts together must be
that whole stream: the same events with the same ids, none missing, none twice.

scripts/js-tools installs Node.js (Debian's packages, when missing) and the SDK from tests/js's
lockfile; without them the test fails, never skips. GRAPHMESH_GATEWAY_TEST_URL=http://host:port (a comma list:
stream through the first, rejoin through the last) and GRAPHMESH_GATEWAY_TEST_API_KEY run it
against servers already serving bench/gateway-graph (`langgraph dev`, a running gateway) instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Iterator

import pytest

from graphmesh.mesh import REPO_ROOT
from helpers import private_mesh

JS_DIR = REPO_ROOT / "tests" / "js"
PROJECT = REPO_ROOT / "bench" / "gateway-graph" / "langgraph.json"
URL_ENV, KEY_ENV = "GRAPHMESH_GATEWAY_TEST_URL", "GRAPHMESH_GATEWAY_TEST_API_KEY"
MESSAGE = "please tell me about resumable streams in a few words"


@pytest.fixture(scope="module")
def js_sdk() -> str:
    """The node executable, with the SDK installed (scripts/js-tools, idempotent)."""
    proc = subprocess.run([str(REPO_ROOT / "scripts" / "js-tools")], capture_output=True, text=True, timeout=600)
    if proc.returncode:
        pytest.fail(f"scripts/js-tools could not install Node.js or @langchain/langgraph-sdk (exit {proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}")
    return shutil.which("node")


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[list[str], dict[str, str]]]:
    """The URLs of the gateway's replicas and the environment that carries the API key."""
    if os.environ.get(URL_ENV):
        key = os.environ.get(KEY_ENV)
        yield [u.strip().rstrip("/") for u in os.environ[URL_ENV].split(",")], {"LANGGRAPH_API_KEY": key} if key else {}
        return
    with private_mesh("gateway-js", manifest=PROJECT, auth="token", workers=1, gateway_port=0,
                      gateway_replicas=2) as mesh:
        token = mesh.create_token("js-client", ["admin"], created_by="test")[1]
        yield mesh.gateway_urls, {"LANGGRAPH_API_KEY": token}


def run_script(node: str, urls: list[str], env: dict[str, str], *args: str) -> list[dict]:
    command = [node, "stream_reconnect.mjs", "--url", urls[0], "--join-url", urls[-1], *args]
    proc = subprocess.run(command, cwd=JS_DIR, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 0, f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def id_order(event_id: str) -> tuple[int, ...]:
    """Event ids compare as numbers: graphmesh's "sequence" or "sequence:index" (several SSE
    events from one graphmesh event), or the reference's "ms-seq"."""
    return tuple(int(part) for part in re.split(r"[-:]", event_id))


def test_stream_resumes_with_last_event_id_without_gap_or_duplicate(js_sdk, gateway):
    urls, env = gateway
    lines = run_script(js_sdk, urls, env, "--graph", "chat", "--message", MESSAGE, "--before", "5")
    by_phase: dict[str, list[dict]] = {}
    for line in lines:
        by_phase.setdefault(line["phase"], []).append(line)
    before, after, full = by_phase.get("before", []), by_phase.get("after", []), by_phase.get("full", [])
    (run,) = by_phase["run"]
    (state,) = by_phase["state"]
    assert run["status"] == "success", run
    assert len(before) == 5 and after, f"the cut should fall inside the run: {len(before)} + {len(after)} events"
    assert before[0]["event"] == "metadata" and before[0]["data"]["run_id"] == run["run_id"]
    assert run["last_event_id"] == before[-1]["id"]

    def key(e: dict) -> tuple:
        return e["event"], e["id"], json.dumps(e["data"], sort_keys=True)

    # The whole run, read uninterrupted, is exactly the two parts end to end.
    assert [key(e) for e in before + after] == [key(e) for e in full], "\n".join(
        f"{'=' if a == b else '!'} {a[:2]} | {b[:2]}" for a, b in zip([key(e) for e in before + after],
                                                                      [key(e) for e in full]))
    ids = [e["id"] for e in full]
    assert all(ids), f"events without an id: {[e['event'] for e in full if not e['id']]}"
    order = [id_order(i) for i in ids]
    assert order == sorted(set(order)), f"ids not strictly increasing: {ids}"

    # The tokens streamed add up to the reply the thread ends with.
    chunks = [e["data"][0] for e in full if e["event"] == "messages"]
    reply = state["values"]["messages"][-1]
    assert reply["type"] == "ai" and reply["content"] == f"You said: {MESSAGE}"
    assert "".join(c["content"] for c in chunks if c["type"] == "AIMessageChunk") == reply["content"]
    assert len(chunks) > 5, "too few token chunks for the cut to fall inside the reply"
    assert [e["data"] for e in full if e["event"] == "values"][-1] == state["values"]
