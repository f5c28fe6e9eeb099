"""Threads checkpointed by research_assistant v1, resumed by a deployment that runs v2 only.

The threads are committed fixtures (tests/fixtures/checkpoints/research_v1.json, written
by v1's own code through make_research_v1.py): a run paused before the renamed node, one
waiting for approval, a completed thread, a run failed in `search`, and a queued run.
Each scenario loads them into a FRESH private mesh right after it starts:

- tests/fixtures/v2_only.yaml declares v2 with its migration from state schema 1: every
  case resumes under v2 (the run is taken over, its checkpoint migrated and recorded).
- tests/fixtures/v2_no_migration.yaml declares v2 without it: a v2 run on a v1 thread is
  refused (INCOMPATIBLE_CHECKPOINT) and v1 runs are not taken over (they stay QUEUED).

The fixtures' event sequence counters refer to events of a NATS that no longer exists;
the resumed runs publish from the next number on, which StreamRun must step over.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from graphmesh.client import api_client, review_stub
from graphmesh.v1 import graph_service_pb2 as gpb
from graphmesh.v1 import review_service_pb2 as rpb
from graphmesh.v1 import run_service_pb2 as pb
from helpers import (
    COMPLETED,
    FAILED,
    QUEUED,
    TERMINAL,
    WAITING,
    assert_gap_free,
    create_run,
    decide,
    event_summary,
    get_run,
    kinds,
    list_approvals,
    private_mesh,
    status_name,
    stream_events,
    thread_values,
    to_dict,
    wait_for,
    wait_status,
)

GRAPH = "research_assistant"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CHECKPOINTS = FIXTURES / "checkpoints"
FIXTURE = CHECKPOINTS / "research_v1.json"
V2_ONLY = FIXTURES / "v2_only.yaml"
V2_NO_MIGRATION = FIXTURES / "v2_no_migration.yaml"
QUICK = 0.05
MIGRATION_STEPS = {"field results -> documents", "node search -> retrieve"}


def _loader():
    spec = importlib.util.spec_from_file_location("graphmesh_checkpoint_fixtures", CHECKPOINTS / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixtures = _loader()


class Deployment:
    def __init__(self, mesh, cases: dict) -> None:
        self.mesh = mesh
        self.cases = cases
        self.client = api_client(mesh.api_address)
        self.review = review_stub(mesh.review_address)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def upgraded():
    """v2 with its migration from schema 1; the v1 fixtures loaded into its fresh database."""
    with private_mesh("ckpt-v2", manifest=V2_ONLY, workers=2) as mesh:
        deployment = Deployment(mesh, fixtures.load_fixtures(mesh.database_url, FIXTURE))
        yield deployment
        deployment.close()


@pytest.fixture(scope="module")
def unmigrated():
    """v2 WITHOUT the migration; the same fixtures loaded into its fresh database."""
    with private_mesh("ckpt-v2-nomig", manifest=V2_NO_MIGRATION, workers=2) as mesh:
        deployment = Deployment(mesh, fixtures.load_fixtures(mesh.database_url, FIXTURE))
        yield deployment
        deployment.close()


def nodes_started(events) -> list[str]:
    return [e.node_started.node for e in events if e.WhichOneof("kind") == "node_started"]


def ids(documents) -> list[str]:
    return [d["id"] for d in documents]


def v1_value(case: str, field: str):
    """What v1 left in the case's state field (read from the fixture's own checkpoint)."""
    return fixtures.channel_value(FIXTURE, case, field)


def assert_migrated_once(run, *, to_version: str = "2") -> None:
    assert run.versions.graph_version == to_version and run.versions.state_schema_version == "2", run.versions
    assert run.versions.prompt_version == "research-v2"
    assert len(run.migrations) == 1, to_dict(run)
    migration = run.migrations[0]
    assert migration.from_versions.graph_version == "1"
    assert migration.from_versions.state_schema_version == "1"
    assert migration.to_versions.graph_version == to_version
    assert migration.to_versions.state_schema_version == "2"
    assert set(migration.steps) == MIGRATION_STEPS, list(migration.steps)
    assert migration.from_checkpoint_id and migration.to_checkpoint_id
    assert migration.from_checkpoint_id != migration.to_checkpoint_id


def assert_v2_thread(d: Deployment, thread_id: str, question: str) -> dict:
    """The thread's state as v2 sees it: `documents`, no v1 `results`, a report."""
    values = thread_values(d.client, thread_id)
    assert "results" not in values, sorted(values)
    assert values.get("documents"), values
    assert values["report"].startswith(f"# {question}"), values["report"]
    assert values["sources"] == ids(values["ranked"])
    state = d.client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=thread_id), timeout=10)
    assert state.checkpoint_metadata["graph_version"] == "2"
    assert state.checkpoint_metadata["state_schema_version"] == "2"
    return values


# -- upgraded: v2 with the migration --------------------------------------------------------


def test_fixture_runs_loaded_as_v1_left_them(upgraded):
    assert set(upgraded.cases) == {"paused_before_search", "waiting_for_approval", "completed", "failed_in_search",
                                   "queued"}
    for name, case in upgraded.cases.items():
        run = get_run(upgraded.client, case["run_id"])
        assert run.thread_id == case["thread_id"]
        if name != "queued":  # the reconciler may already have dispatched that one
            assert status_name(run.status).removeprefix("RUN_STATUS_") == case["status"], name
            assert run.versions.graph_version == "1" and run.versions.state_schema_version == "1", name


def test_paused_before_search_resumes_before_retrieve(upgraded):
    d, case = upgraded, upgraded.cases["paused_before_search"]
    run_id = case["run_id"]
    # Read the whole stream while the run executes: the run's earlier events (1..event_seq)
    # were in the old deployment's NATS, so this also checks that StreamRun steps over them.
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(stream_events, d.client, run_id)
        resumed = d.client.runs.ResumeRun(pb.ResumeRunRequest(run_id=run_id), timeout=10).run
        assert resumed.status == QUEUED
        done = wait_status(d.client, run_id, TERMINAL)
        events = streaming.result()
    assert done.status == COMPLETED, done.error
    assert_migrated_once(done)
    assert done.attempt == 1

    summary = event_summary(events)
    assert events[-1].status_changed.status == COMPLETED, summary
    assert_gap_free(events, first=case["event_seq"] + 1)
    # Only what was left to do, under v2's node names; `plan` ran under v1.
    assert nodes_started(events) == ["retrieve", "rank", "summarize", "write_report"], summary
    migrated = [e.checkpoint_migrated for e in events if e.WhichOneof("kind") == "checkpoint_migrated"]
    assert len(migrated) == 1 and set(migrated[0].steps) == MIGRATION_STEPS, summary
    assert kinds(events).index("checkpoint_migrated") < kinds(events).index("node_started"), summary

    values = assert_v2_thread(d, case["thread_id"], case["input"]["question"])
    assert values["queries"] == v1_value("paused_before_search", "queries")  # planned by v1, kept


def test_waiting_for_approval_completes_with_the_recorded_decision(upgraded):
    d, case = upgraded, upgraded.cases["waiting_for_approval"]
    run_id = case["run_id"]
    (pending,) = list_approvals(d.review, run_id=run_id)
    assert pending.approval_id == case["approval_id"] and pending.status == rpb.APPROVAL_STATUS_PENDING
    assert pending.node == "write_report"

    decide(d.review, pending.approval_id, "approve", reviewer="alice", comment="fine under v2")
    # Decide moved it WAITING -> QUEUED; coming back WAITING would mean it asked again.
    done = wait_status(d.client, run_id, TERMINAL | {WAITING})
    assert done.status == COMPLETED, f"{done.status} {done.error}"
    assert_migrated_once(done)

    approvals = list_approvals(d.review, run_id=run_id)
    assert len(approvals) == 1, [to_dict(a) for a in approvals]
    assert approvals[0].status == rpb.APPROVAL_STATUS_APPROVED and approvals[0].decision.reviewer == "alice"

    values = assert_v2_thread(d, case["thread_id"], case["input"]["question"])
    assert values["reviewed_by"] == "alice"
    assert ids(values["documents"]) == ids(v1_value("waiting_for_approval", "results"))
    events = stream_events(d.client, run_id, after=case["event_seq"])
    assert "approval_requested" not in kinds(events), event_summary(events)
    # write_report runs again from the migrated checkpoint, re-raises its interrupt (under a
    # new id), which gets the recorded decision at once, and then finishes, once.
    assert set(nodes_started(events)) == {"write_report"}, event_summary(events)
    finished = [e.node_finished.node for e in events if e.WhichOneof("kind") == "node_finished"]
    assert finished == ["write_report"], event_summary(events)


def test_completed_thread_continues_under_v2_and_accumulates_documents(upgraded):
    d, case = upgraded, upgraded.cases["completed"]
    question = "How do gRPC deadlines work with NATS?"
    run = create_run(d.client, GRAPH, {"question": question, "delay_seconds": QUICK}, thread_id=case["thread_id"])
    assert run.versions.graph_version == "2"  # the thread's v1 is not served here: rollout weights decide
    done = wait_status(d.client, run.run_id, TERMINAL)
    assert done.status == COMPLETED, done.error
    assert_migrated_once(done)

    events = stream_events(d.client, run.run_id)
    assert_gap_free(events)
    assert nodes_started(events) == ["plan", "retrieve", "rank", "summarize", "write_report"], event_summary(events)
    (retrieved,) = [to_dict(e.node_finished.update) for e in events
                    if e.WhichOneof("kind") == "node_finished" and e.node_finished.node == "retrieve"]
    new = ids(retrieved["documents"])
    old = ids(v1_value("completed", "results"))
    assert old and new
    values = assert_v2_thread(d, case["thread_id"], question)
    # v2's appending reducer: v1's results (migrated) first, then this run's documents.
    assert ids(values["documents"]) == old + new


def test_failed_in_search_retries_under_v2(upgraded):
    d, case = upgraded, upgraded.cases["failed_in_search"]
    run_id = case["run_id"]
    assert get_run(d.client, run_id).error.node == "search"
    # The input's fault injection (fail_first_attempts == the retry policy's 3 attempts) is
    # part of the state, so v2's `retrieve` fails its first 3 attempts in each fresh worker
    # process, as v1's `search` did: the first retry fails there; a later one on a worker
    # that has failed them completes. With 2 workers, 3 retries suffice.
    retried = d.client.runs.RetryRun(pb.RetryRunRequest(run_id=run_id), timeout=10).run
    assert retried.status == QUEUED and retried.attempt == 2
    first = wait_status(d.client, run_id, TERMINAL)
    assert first.status == FAILED and first.error.code == "NODE_FAILED", first.error
    assert first.error.node == "retrieve", first.error  # continued under v2's node name
    assert_migrated_once(first)
    events = stream_events(d.client, run_id, after=case["event_seq"])
    assert "search" not in nodes_started(events) and nodes_started(events)[0] == "retrieve", event_summary(events)

    done = first
    for attempt in range(3, 6):
        if done.status == COMPLETED:
            break
        d.client.runs.RetryRun(pb.RetryRunRequest(run_id=run_id), timeout=10)
        done = wait_status(d.client, run_id, TERMINAL)
        assert done.attempt == attempt
        assert done.status == COMPLETED or done.error.node == "retrieve", done.error
    assert done.status == COMPLETED, done.error
    assert_migrated_once(done)  # once: later attempts found the thread on schema 2
    assert [e.node for e in done.previous_errors][:2] == ["search", "retrieve"]
    assert_v2_thread(d, case["thread_id"], case["input"]["question"])


def test_queued_run_is_dispatched_and_taken_over(upgraded):
    d, case = upgraded, upgraded.cases["queued"]
    # Its job message died with the old NATS: the api's reconciler publishes it again.
    done = wait_status(d.client, case["run_id"], TERMINAL)
    assert done.status == COMPLETED, done.error
    assert_migrated_once(done)
    assert get_run(d.client, case["previous_run_id"]).versions.graph_version == "1"  # history stays v1
    values = assert_v2_thread(d, case["thread_id"], case["input"]["question"])
    old = ids(v1_value("queued", "results"))
    assert old and ids(values["documents"])[:len(old)] == old


def test_stream_of_a_finished_run_steps_over_the_events_of_the_old_deployment(upgraded):
    d, case = upgraded, upgraded.cases["paused_before_search"]
    run_id = case["run_id"]
    if get_run(d.client, run_id).status not in TERMINAL:  # this test alone: resume it here
        d.client.runs.ResumeRun(pb.ResumeRunRequest(run_id=run_id), timeout=10)
    wait_status(d.client, run_id, TERMINAL)

    def quiet_for_a_while():  # past StreamRun's 3 s grace for a lost terminal event
        run = get_run(d.client, run_id)
        return time.time() - run.updated_at.ToDatetime().timestamp() > 3.5

    wait_for(quiet_for_a_while, timeout=30, interval=0.2, message=f"run {run_id} to be quiet for 3.5 s")
    events = stream_events(d.client, run_id)
    stored = stream_events(d.client, run_id, after=case["event_seq"])  # what JetStream holds
    assert len(stored) > 1 and stored[-1].status_changed.status == COMPLETED, event_summary(stored)
    assert event_summary(events) == event_summary(stored)


# -- unmigrated: v2 without the migration ---------------------------------------------------


def test_without_a_migration_a_v2_run_on_a_v1_thread_is_refused(unmigrated):
    d, case = unmigrated, unmigrated.cases["completed"]
    run = create_run(d.client, GRAPH, {"question": "refused", "delay_seconds": QUICK}, thread_id=case["thread_id"],
                     graph_version="2")
    failed = wait_status(d.client, run.run_id, TERMINAL)
    assert failed.status == FAILED, failed
    assert failed.error.code == "INCOMPATIBLE_CHECKPOINT"
    for fragment in ("research_assistant@1", "research_assistant@2", "no migration path"):
        assert fragment in failed.error.message, failed.error.message
    assert "Traceback" not in failed.error.message
    assert not failed.migrations
    # The thread was not touched: its latest checkpoint is still v1's.
    state = d.client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=case["thread_id"]), timeout=10)
    assert state.checkpoint_metadata["graph_version"] == "1"
    assert state.checkpoint_metadata["gm_run_id"] == case["run_id"]


def test_without_a_migration_v1_runs_are_not_taken_over(unmigrated):
    d = unmigrated
    paused, queued = d.cases["paused_before_search"], d.cases["queued"]
    resumed = d.client.runs.ResumeRun(pb.ResumeRunRequest(run_id=paused["run_id"]), timeout=10).run
    assert resumed.status == QUEUED

    # Only v2 is registered and both workers serve it: nobody serves the runs' v1.
    graph = d.client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH), timeout=10).graph
    # v1 is listed after the declared versions, marked undeclared, with its waiting runs.
    assert [(v.versions.graph_version, v.undeclared) for v in graph.versions] == [("2", False), ("1", True)]
    assert graph.versions[1].runs_queued >= 2 and not graph.versions[1].workers and not graph.versions[1].nodes
    wait_for(lambda: len(d.client.graphs.GetGraph(gpb.GetGraphRequest(graph=GRAPH), timeout=10)
                         .graph.versions[0].workers) == 2, message="both workers to announce v2")

    # Workers fetch the resumed run's job at once (and the reconciler re-publishes the queued
    # one every 5 s); without a migration path they leave both alone. Watch for a while.
    watch_until = time.monotonic() + 6.0

    def still_queued() -> bool:
        for case in (paused, queued):
            run = get_run(d.client, case["run_id"])
            assert run.status == QUEUED, f"{case['run_id']} moved to {run.status}: {run.error}"
            assert run.versions.graph_version == "1" and not run.migrations and not run.error.code
        return time.monotonic() > watch_until

    wait_for(still_queued, timeout=30, interval=0.2, message="the v1 runs to be left queued")
    state = d.client.runs.GetThreadState(pb.GetThreadStateRequest(thread_id=paused["thread_id"]), timeout=10)
    assert state.checkpoint_metadata["graph_version"] == "1"
    # No v1 code here: the state is read from the checkpoint itself, v1's fields and all.
    assert list(state.next) == ["search"]
    assert "question" in to_dict(state.values) and "documents" not in to_dict(state.values)

    # doctor names the stranded version instead of reporting OK while its runs wait.
    cli = [sys.executable, "-c", "from graphmesh.cli import main; raise SystemExit(main())"]
    done = subprocess.run([*cli, "--api", d.mesh.api_address, "doctor", "--review", d.mesh.review_address],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout
    assert f"{GRAPH}@1" in done.stdout and "no longer in the manifest" in done.stdout
