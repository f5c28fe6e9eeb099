"""Observability end to end: one trace per run across api, workers and review (read back
with RunService.GetRunTrace and `graphmesh trace`), no payloads in spans, Prometheus
metrics that move as runs happen, JSON logs that lead to the run's trace.

Uses its own mesh (api, review, two workers), so metric deltas and log files are this
module's alone. Spans are exported in batches, so every trace read polls until the
expected spans have arrived.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from graphmesh.client import api_client, review_stub
from graphmesh.mesh import REPO_ROOT
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_pb2
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    WAITING,
    create_run,
    decide,
    private_mesh,
    rpc_error,
    stream_events,
    wait_approvals,
    wait_for,
    wait_status,
)

CLI = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
SERVICES = {"graphmesh-api", "graphmesh-worker", "graphmesh-review"}
CREATE_RUN = "/graphmesh.v1.RunService/CreateRun"
NODE_ATTRIBUTES = ("graphmesh.node", "graphmesh.run_id", "graphmesh.thread_id", "graphmesh.graph_version",
                   "graphmesh.attempt")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def obs_mesh():
    with private_mesh("observability", workers=2) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def api(obs_mesh):
    c = api_client(obs_mesh.api_address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def review(obs_mesh):
    return review_stub(obs_mesh.review_address)


# -- traces ---------------------------------------------------------------------------------


def get_trace(api, run_id: str) -> pb.GetRunTraceResponse:
    return api.runs.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id), timeout=10)


def wait_trace(api, run_id: str, complete, what: str) -> pb.GetRunTraceResponse:
    """Polls GetRunTrace until `complete(spans)` holds (spans arrive in batches)."""
    last: list[pb.GetRunTraceResponse] = []

    def check():
        reply = get_trace(api, run_id)
        last[:] = [reply]
        return reply if complete(list(reply.spans)) else None

    return wait_for(check, 60, interval=0.2, message=lambda: (
        f"the trace of run {run_id} to hold {what}; it has: "
        f"{[(s.service, s.name, dict(s.attributes).get('graphmesh.status', '')) for s in last[0].spans] if last else '?'}"))


def named(spans, name: str) -> list[pb.Span]:
    return [s for s in spans if s.name == name]


def execution(spans, status: str) -> list[pb.Span]:
    return [s for s in named(spans, "run.execute") if s.attributes.get("graphmesh.status") == status]


def describe(span: pb.Span) -> str:
    return f"{span.service} {span.name} ({span.span_id} <- {span.parent_span_id or 'root'}, depth {span.depth})"


@dataclass
class ApprovedRun:
    run: run_pb2.Run
    events: list[run_pb2.RunEvent]
    trace: pb.GetRunTraceResponse
    secrets: list[str]


@pytest.fixture(scope="module")
def approved_run(api, review) -> ApprovedRun:
    """An approval_workflow run taken through its approval: created on the api, executed by
    a worker until it waits, decided on the review service, resumed and completed by a
    worker. Its input carries distinctive strings that must never reach a span."""
    secrets = [f"s3cr3t-reason-{uuid.uuid4()}", f"s3cr3t-target-{uuid.uuid4()}", f"s3cr3t-who-{uuid.uuid4()}"]
    run = create_run(api, "approval_workflow", {"action": "refund", "amount": 42.5, "reason": secrets[0],
                                                "target": secrets[1], "requested_by": secrets[2]})
    wait_status(api, run.run_id, WAITING)
    [approval] = wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_PENDING)
    decide(review, approval.approval_id, "approve", reviewer="olly", comment="fine")
    run = wait_status(api, run.run_id, COMPLETED)
    events = stream_events(api, run.run_id)

    def complete(spans) -> bool:
        return (len(named(spans, CREATE_RUN)) == 1 and len(named(spans, "approval.request")) == 1
                and len(named(spans, "approval.decide")) == 1 and len(named(spans, "node apply_change")) == 1
                and len(execution(spans, "WAITING_FOR_APPROVAL")) == 1 and len(execution(spans, "COMPLETED")) == 1)

    trace = wait_trace(api, run.run_id, complete, "CreateRun, both executions, approval.request/.decide")
    return ApprovedRun(run, events, trace, secrets)


def test_one_trace_per_run_across_three_services(approved_run):
    run, trace = approved_run.run, approved_run.trace
    spans = list(trace.spans)
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "a span id appears twice in the trace"
    assert HEX32.match(trace.trace_id), trace.trace_id

    # The run's events carry the same trace id, whichever process emitted them.
    assert approved_run.events[-1].status_changed.status == COMPLETED
    worker_kinds = {"node_started", "node_finished", "approval_requested"}
    assert worker_kinds <= {e.WhichOneof("kind") for e in approved_run.events}
    wrong = [(e.sequence, e.WhichOneof("kind"), e.trace_id) for e in approved_run.events
             if e.trace_id != trace.trace_id]
    assert not wrong, f"events outside the run's trace {trace.trace_id}: {wrong}"

    assert {s.service for s in spans} == SERVICES

    # One root: the CreateRun server span on the api.
    roots = [s for s in spans if s.parent_span_id not in by_id]
    assert [describe(s) for s in roots] == [describe(named(spans, CREATE_RUN)[0])]
    root = roots[0]
    assert (root.service, root.kind, root.depth, root.parent_span_id) == ("graphmesh-api", "SERVER", 0, "")

    # First execution (worker) under CreateRun; it requested the approval.
    [first] = execution(spans, "WAITING_FOR_APPROVAL")
    [second] = execution(spans, "COMPLETED")
    assert len(named(spans, "run.execute")) == 2, [describe(s) for s in named(spans, "run.execute")]
    for e in (first, second):
        assert (e.service, e.kind) == ("graphmesh-worker", "CONSUMER"), describe(e)
        assert e.attributes["graphmesh.run_id"] == run.run_id
        assert e.attributes["graphmesh.thread_id"] == run.thread_id
    assert first.parent_span_id == root.span_id, describe(first)
    [request] = named(spans, "approval.request")
    assert request.parent_span_id == first.span_id, describe(request)
    assert request.service == "graphmesh-worker"

    # The decision (review service) joins the run's trace; the resumed execution follows from it.
    [decision] = named(spans, "approval.decide")
    assert decision.service == "graphmesh-review"
    assert decision.parent_span_id in by_id, describe(decision)
    assert decision.attributes["graphmesh.decision"] == "approve"
    assert decision.attributes["graphmesh.run_id"] == run.run_id
    assert second.parent_span_id == decision.span_id, describe(second)

    # Node spans sit under an execution and say which run, thread, version and attempt.
    executions = {first.span_id: first, second.span_id: second}
    nodes = [s for s in spans if s.name.startswith("node ")]
    for node in nodes:
        assert node.parent_span_id in executions, describe(node)
        assert node.service == "graphmesh-worker"
        missing = [k for k in NODE_ATTRIBUTES if not node.attributes.get(k)]
        assert not missing, f"{describe(node)} lacks {missing}: {dict(node.attributes)}"
        assert node.name == f"node {node.attributes['graphmesh.node']}"
        assert node.attributes["graphmesh.run_id"] == run.run_id
        assert node.attributes["graphmesh.thread_id"] == run.thread_id
        assert node.attributes["graphmesh.graph_version"] == run.versions.graph_version
        assert node.attributes["graphmesh.attempt"] == executions[node.parent_span_id].attributes["graphmesh.attempt"]
    first_nodes = sorted(n.attributes["graphmesh.node"] for n in nodes if n.parent_span_id == first.span_id)
    second_nodes = sorted(n.attributes["graphmesh.node"] for n in nodes if n.parent_span_id == second.span_id)
    assert first_nodes == ["prepare", "review"], first_nodes
    assert second_nodes == ["apply_change", "review"], second_nodes
    [interrupted] = [n for n in nodes if n.attributes.get("graphmesh.interrupted") == "true"]
    assert interrupted.attributes["graphmesh.node"] == "review" and interrupted.parent_span_id == first.span_id
    assert interrupted.status != "ERROR", "an interrupt is not an error"

    # Checkpoint writes are traced, inside the executions.
    puts = named(spans, "checkpoint.put")
    assert puts, "no checkpoint.put spans"
    assert {p.parent_span_id for p in puts} <= set(executions) | {n.span_id for n in nodes}, \
        [describe(p) for p in puts]
    assert any(p.parent_span_id == first.span_id for p in puts)
    assert any(p.parent_span_id == second.span_id for p in puts)

    # Tree order and depth agree with the parent links; times are sane.
    seen: set[str] = set()
    for span in spans:
        if span.parent_span_id in by_id:
            parent = by_id[span.parent_span_id]
            assert parent.span_id in seen, f"{describe(span)} is listed before its parent"
            assert span.depth == parent.depth + 1, f"{describe(span)} under {describe(parent)}"
            assert span.start_unix_nano >= parent.start_unix_nano, \
                f"{describe(span)} starts before its parent {describe(parent)}"
        else:
            assert span.depth == 0, describe(span)
        assert span.start_unix_nano > 0 and span.end_unix_nano >= span.start_unix_nano, describe(span)
        seen.add(span.span_id)


def _span_rows(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT trace_id, name, attributes::text, status_message FROM gm_spans").fetchall()


def test_no_payloads_in_spans(obs_mesh, approved_run):
    spans = list(approved_run.trace.spans)
    assert spans
    for secret in approved_run.secrets:
        leaks = [(s.name, k) for s in spans for k, v in s.attributes.items() if secret in v]
        leaks += [(s.name, "<name>") for s in spans if secret in s.name]
        leaks += [(s.name, "<status_message>") for s in spans if secret in s.status_message]
        assert not leaks, f"input value {secret!r} is in spans: {leaks}"
    # Nor in any stored span, whatever trace it belongs to (e.g. the Decide RPC's own).
    rows = _span_rows(obs_mesh.database_url)
    assert any(r[0] == approved_run.trace.trace_id for r in rows)
    for secret in approved_run.secrets:
        leaks = [(r[0], r[1]) for r in rows if any(secret in (field or "") for field in r[1:])]
        assert not leaks, f"input value {secret!r} is in stored spans: {leaks}"


# -- `graphmesh trace` and GetRunTrace errors -------------------------------------------------


def _cli(obs_mesh, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--api", obs_mesh.api_address, *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def test_trace_cli_waterfall_and_json(obs_mesh, approved_run):
    trace = approved_run.trace
    result = _cli(obs_mesh, "trace", approved_run.run.run_id)
    assert result.returncode == 0, result
    lines = result.stdout.rstrip("\n").splitlines()
    header, rows = lines[0], lines[1:]
    assert header.startswith(f"trace {trace.trace_id}  {len(trace.spans)} spans"), header
    assert all(service in header for service in SERVICES), header
    # One line per span, in the trace's tree order.
    assert len(rows) == len(trace.spans), result.stdout
    for row, span in zip(rows, trace.spans):
        assert span.name in row, (row, describe(span))
    index = {name: [i for i, r in enumerate(rows) if name in r] for name in
             (CREATE_RUN, "run.execute", "approval.decide", "node apply_change")}
    assert all(index.values()), index
    assert "CreateRun" in rows[0] and "api" in rows[0]
    [decide_row] = index["approval.decide"]
    assert "decision=approve" in rows[decide_row]
    assert any("status=WAITING_FOR_APPROVAL" in rows[i] for i in index["run.execute"])
    completed = [i for i in index["run.execute"] if "status=COMPLETED" in rows[i]]
    assert completed and completed[0] > decide_row, result.stdout
    assert index["node apply_change"][0] > completed[0]

    result = _cli(obs_mesh, "trace", approved_run.run.run_id, "--json")
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    assert data["trace_id"] == trace.trace_id
    assert {s["span_id"] for s in data["spans"]} >= {s.span_id for s in trace.spans}
    assert {s["service"] for s in data["spans"]} == SERVICES
    assert {"run.execute", "approval.decide", "node apply_change", CREATE_RUN} <= {s["name"] for s in data["spans"]}


def test_get_run_trace_unknown_or_malformed_run(api):
    with rpc_error(grpc.StatusCode.NOT_FOUND):
        get_trace(api, str(uuid.uuid4()))
    # A malformed id names no run: NOT_FOUND, as for GetRun (store/paging.py parse_uuid).
    with rpc_error(grpc.StatusCode.NOT_FOUND) as err:
        get_trace(api, "not-a-run-id")
    assert "not-a-run-id" in err["details"]


# -- metrics ------------------------------------------------------------------------------------


def scrape(url: str) -> list:
    assert url, "metrics are off"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def present(samples, name: str, **labels: str) -> list:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_follow_runs(obs_mesh, api, review):
    urls = {name: obs_mesh.metrics_url(name) for name in ("api", "review", *WORKERS)}

    def workers_total(name: str, **labels: str) -> float:
        return sum(total(scrape(urls[w]), name, **labels) for w in WORKERS)

    # Every service sees its dependencies; workers say how many runs they take.
    for name, url in urls.items():
        wait_for(lambda: present(scrape(url), "graphmesh_dependency_up", dependency="postgres"), 30,
                 message=f"graphmesh_dependency_up{{dependency=postgres}} on {name}")
        up = present(scrape(url), "graphmesh_dependency_up", dependency="postgres")
        assert [s.value for s in up] == [1.0], (name, up)
        assert [s.value for s in present(scrape(url), "graphmesh_dependency_up", dependency="nats")] == [1.0], name
    for worker in WORKERS:
        capacity = wait_for(lambda: present(scrape(urls[worker]), "graphmesh_worker_capacity", worker=worker), 30,
                            message=f"graphmesh_worker_capacity on {worker}")
        assert [s.value for s in capacity] == [float(obs_mesh.config.worker_concurrency)], capacity

    created = total(scrape(urls["api"]), "graphmesh_runs_created_total", graph="tiny")
    finished = workers_total("graphmesh_runs_finished_total", graph="tiny", status="COMPLETED")
    node_samples = workers_total("graphmesh_node_duration_seconds_count", graph="tiny")
    runs = [create_run(api, "tiny", {"text": f"metrics run {i}"}) for i in range(3)]
    for run in runs:
        wait_status(api, run.run_id, COMPLETED)

    assert total(scrape(urls["api"]), "graphmesh_runs_created_total", graph="tiny") == created + 3
    wait_for(lambda: workers_total("graphmesh_runs_finished_total", graph="tiny", status="COMPLETED") >= finished + 3,
             30, message="graphmesh_runs_finished_total{status=COMPLETED} to grow by 3")
    # tiny has three nodes: at least nine more node samples.
    wait_for(lambda: workers_total("graphmesh_node_duration_seconds_count", graph="tiny") >= node_samples + 9, 30,
             message="graphmesh_node_duration_seconds_count to grow by 9")

    # A decision records its latency on the review service; the pending gauge follows.
    run = create_run(api, "approval_workflow", {"action": "deploy", "target": "metrics-svc"})
    [approval] = wait_approvals(review, run.run_id, 1, rpb.APPROVAL_STATUS_PENDING)
    latency = dict(graph="approval_workflow", decision="approve")
    decisions = total(scrape(urls["review"]), "graphmesh_approval_decision_latency_seconds_count", **latency)
    wait_for(lambda: total(scrape(urls["review"]), "graphmesh_approvals_pending", graph="approval_workflow") >= 1,
             30, interval=0.5, message="graphmesh_approvals_pending{graph=approval_workflow} to show the approval")
    decide(review, approval.approval_id, "approve")
    assert total(scrape(urls["review"]), "graphmesh_approval_decision_latency_seconds_count",
                 **latency) == decisions + 1
    wait_status(api, run.run_id, COMPLETED)
    wait_for(lambda: total(scrape(urls["review"]), "graphmesh_approvals_pending", graph="approval_workflow") == 0,
             30, interval=0.5, message="graphmesh_approvals_pending{graph=approval_workflow} back to 0")


# -- logs ---------------------------------------------------------------------------------------


def log_entries(obs_mesh) -> list[dict]:
    """Every worker log line as a JSON object (the supervisor's '=== starting' banners aside)."""
    entries = []
    for worker in WORKERS:
        for number, line in enumerate(obs_mesh.log_path(worker).read_text().splitlines(), 1):
            if not line.strip() or line.startswith("=== "):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"{worker}.log line {number} is not JSON: {line[:300]!r}") from None
            assert isinstance(entry, dict), f"{worker}.log line {number} is not a JSON object: {line[:300]!r}"
            entries.append(entry)
    return entries


def test_worker_logs_are_json_and_lead_to_the_trace(obs_mesh, api):
    # search fails on every attempt: the executor logs the failure inside the run's span.
    run = create_run(api, "research_assistant", {"question": "observability", "delay_seconds": 0,
                                                 "fail_first_attempts": 10})
    failed = wait_status(api, run.run_id, FAILED)
    assert failed.error.code == "NODE_FAILED", failed.error
    trace = wait_trace(api, run.run_id, lambda spans: len(execution(spans, "FAILED")) == 1, "the failed execution")
    spans = {s.span_id: s for s in trace.spans}

    def about_run():
        return [e for e in log_entries(obs_mesh) if e.get("run_id") == run.run_id and "search failed" in e["message"]]

    lines = wait_for(about_run, 30, message=f"a worker log line about run {run.run_id}'s failed node")
    for entry in lines:
        assert entry["level"] == "ERROR", entry
        assert entry["thread_id"] == run.thread_id, entry
        assert HEX32.match(entry.get("trace_id", "")), entry
        assert entry["trace_id"] == trace.trace_id, (entry, trace.trace_id)
        # The line names the span it was written in: the run's execution.
        assert spans.get(entry.get("span_id")) is not None, (entry, [describe(s) for s in trace.spans])
        assert spans[entry["span_id"]].name == "run.execute"
    [execute] = execution(trace.spans, "FAILED")
    assert execute.status == "ERROR"
    search = [s for s in trace.spans if s.name == "node search"]
    assert search and all(s.status == "ERROR" and s.parent_span_id == execute.span_id for s in search), \
        [describe(s) for s in search]
