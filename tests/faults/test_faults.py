"""Fault injection (issue 4, "Tests"): batches of runs under worker SIGKILLs, a Postgres
outage, a NATS outage and a rolling drain of every worker. Zero runs lost; no node whose
completion was checkpointed runs again.

The module runs its own mesh (tests/fixtures/faults.yaml: three workers of four slots, a
3-second lease and ack wait, 20 deliveries before a dead letter, so a kill storm never
dead-letters a run). The graph (tests/fixtures/fault_graphs.py) is four nodes in a line; each
sleeps a little and, as its very last act, counts its side effect in `fault_effects`
(keyed by run and node) and logs it with its worker's pid and LangGraph task id in
`fault_effect_log`.

How duplicates are judged. LangGraph saves a node's writes right after the node returns; a
node stopped after its effect but before that save (a SIGKILL, a database that went away)
runs again on resume: that is at-least-once for steps, and the re-run has the same task id
(same checkpoint, same step). With async durability the next step may already run while
the previous checkpoint is being saved, so a fault can also take a step's save with it: the
run starts over from its last recorded checkpoint and the re-run has another task id. So a
(run, node) whose effect count is above 1 is an *expected* duplicate when every earlier
execution was cut off by this scenario's fault (its worker was SIGKILLed, or a backend was
down) before its completion was recorded: the same task, or another task whose writes never
reached checkpoint_writes. Anything else (a recorded completion run again, or no fault to
explain it) is a *real* duplicate: a completed node ran twice. Real duplicates must be zero; expected
ones are bounded by the faults (kills, or the slots busy when a backend stopped). The final
state's `trail` must list each node exactly once.

The figures (runs, kills, outages, lost, duplicated, time to recover) are printed at the end
of the pytest run (tests/faults/conftest.py). Waits are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.rows import dict_row

from graphmesh.client import api_client, worker_stub
from graphmesh.mesh import Mesh
from graphmesh.v1 import run_service_pb2 as pb
from graphmesh.v1 import worker_service_pb2 as wpb
from helpers import (
    COMPLETED,
    RESTING,
    RUNNING,
    create_run,
    new_thread,
    private_mesh,
    status_name,
    statuses_of,
    stream_events,
    thread_values,
    wait_for,
)

MANIFEST = Path(__file__).resolve().parent.parent / "fixtures" / "faults.yaml"
GRAPH = "fault_line"
NODES = ("a", "b", "c", "d")  # as in tests/fixtures/fault_graphs.py
WORKERS = 3
CONCURRENCY = 4
SLOTS = WORKERS * CONCURRENCY
ENV = {
    "GRAPHMESH_LEASE_SECONDS": "3",
    "GRAPHMESH_ACK_WAIT_SECONDS": "3",
    "GRAPHMESH_MAX_DELIVERIES": "20",
    "GRAPHMESH_DB_TIMEOUT_SECONDS": "2",
}
# Bounds on waits (a hung scenario fails instead of hanging), never timing assertions.
BATCH_TIMEOUT = 180.0
READY_TIMEOUT = 90.0
# How long a backend stays down.
OUTAGE_SECONDS = 3.0
MAX_KILLS = 10

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS fault_effects (
    run_id text NOT NULL,
    node text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS fault_effect_log (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    node text NOT NULL,
    task text NOT NULL,
    step integer NOT NULL,
    worker text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory):
    with private_mesh("faults", manifest=MANIFEST, workers=WORKERS, worker_concurrency=CONCURRENCY,
                      extra_env=ENV) as m:
        with psycopg.connect(m.database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLES)
        try:
            yield m
        finally:
            # The mesh's data dir goes away with it: keep the service logs for a post-mortem.
            shutil.copytree(m.log_dir, tmp_path_factory.getbasetemp() / "fault_logs", dirs_exist_ok=True)


@pytest.fixture(scope="module")
def client(fault_mesh):
    c = api_client(fault_mesh.api_address)
    yield c
    c.close()


@pytest.fixture
def healthy(fault_mesh):
    """Each scenario starts (and leaves) the mesh whole: both backends up, every service SERVING."""
    restore(fault_mesh)
    yield fault_mesh
    restore(fault_mesh)


def restore(mesh: Mesh) -> None:
    if mesh.postgres is not None and not mesh.postgres.is_running():
        mesh.postgres.start()
    if mesh.nats is not None and not mesh.nats.is_running():
        mesh.nats.start()
    for name in mesh.service_names:
        if mesh.pid(name) is None:
            mesh.start_service(name)
    addresses = [mesh.address(n) for n in mesh.service_names]
    wait_for(lambda: all(serving(a) for a in addresses), READY_TIMEOUT, interval=0.2,
             message="every service to be SERVING")


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


# -- batches --------------------------------------------------------------------------------------

@dataclass
class Batch:
    tag: str
    runs: dict[str, str] = field(default_factory=dict)  # run id -> thread id
    ended: dict[str, float] = field(default_factory=dict)  # run id -> when first seen resting (monotonic)

    @property
    def ids(self) -> list[str]:
        return list(self.runs)


def add_runs(client, batch: Batch, count: int, min_sleep: float, max_sleep: float) -> None:
    for _ in range(count):
        thread = new_thread(f"fault-{batch.tag}")
        inputs = {"tag": batch.tag, "min_sleep": min_sleep, "max_sleep": max_sleep}
        run = wait_for(lambda: _try_create(client, inputs, thread), 60, interval=0.2,
                       message=f"CreateRun to accept a {batch.tag} run")
        batch.runs[run.run_id] = thread


def _try_create(client, inputs: dict, thread: str):
    try:
        return create_run(client, GRAPH, inputs, thread_id=thread)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            return None
        raise


def statuses(client, ids: list[str]) -> dict[str, int]:
    """The runs' statuses as the api reports them now; runs it cannot read are left out."""
    found: dict[str, int] = {}
    for run_id in ids:
        try:
            found[run_id] = client.runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=5).run.status
        except grpc.RpcError:
            pass
    return found


def wait_batch(client, batch: Batch, *, until: Callable[[dict[str, int]], bool] | None = None,
               during: Callable[[], None] | None = None, timeout: float = BATCH_TIMEOUT) -> dict[str, int]:
    """Polls the batch until `until(statuses)` (default: every run rests), calling `during()`
    between polls (fault injection). Bounded: returns the last statuses at the deadline."""
    until = until or (lambda s: len(s) == len(batch.runs) and all(v in RESTING for v in s.values()))
    deadline = time.monotonic() + timeout
    known: dict[str, int] = {}
    while True:
        known.update(statuses(client, batch.ids))
        now = time.monotonic()
        for run_id, status in known.items():
            if status in RESTING:
                batch.ended.setdefault(run_id, now)
        if until(known) or time.monotonic() > deadline:
            return known
        if during is not None:
            during()
        time.sleep(0.2)


def completed(known: dict[str, int]) -> int:
    return sum(1 for s in known.values() if s == COMPLETED)


# -- judging the side effects ---------------------------------------------------------------------

@dataclass
class Verdict:
    lost: list[str]
    missing_effects: list[tuple[str, str]]
    duplicated: int
    # Runs with a duplicated node: an execution cut off by async durability's run-ahead may
    # repeat every node since its last recorded checkpoint, so a fault is bounded in runs.
    duplicated_runs: int
    expected: list[str]
    real: list[str]
    bad_trails: list[str]

    def describe(self) -> str:
        return (f"lost: {self.lost}\nmissing effects: {self.missing_effects}\nreal duplicates: {self.real}\n"
                f"expected duplicates: {self.expected}\nbad trails: {self.bad_trails}")


def judge(mesh: Mesh, client, batch: Batch, final: dict[str, int], *, killed_pids: set[int],
          outage: bool) -> Verdict:
    """Counts lost runs and duplicated side effects, and classifies each duplicate (see the
    module docstring): expected when the earlier executions were cut off by a fault of this
    scenario, real otherwise.

    Cut off means: the same task (a kill or an outage between the effect and its save), or
    another task whose writes were never recorded. With async durability a worker runs a
    run's next nodes while the previous checkpoint is still being saved; a fault that takes
    that save with it (a SIGKILLed worker or postmaster, Postgres stopped) makes the run start
    over from its last recorded checkpoint, under new task ids. Such a re-run is real only
    when the earlier execution's completion was recorded: its task's writes are in
    checkpoint_writes."""
    with psycopg.connect(mesh.database_url, autocommit=True, row_factory=dict_row) as conn:
        counts = {(r["run_id"], r["node"]): r["count"] for r in conn.execute(
            "SELECT run_id, node, count FROM fault_effects WHERE run_id = ANY(%s)", (batch.ids,))}
        log = conn.execute(
            "SELECT run_id, node, task, step, worker, pid FROM fault_effect_log WHERE run_id = ANY(%s) ORDER BY id",
            (batch.ids,)).fetchall()
        failures = {r["run_id"]: f"{r['error_code']}: {r['error_message']}" for r in conn.execute(
            "SELECT run_id, error_code, error_message FROM gm_runs WHERE run_id = ANY(%s)", (batch.ids,))}
        recorded = {r["task_id"] for r in conn.execute(
            "SELECT DISTINCT task_id FROM checkpoint_writes WHERE thread_id = ANY(%s)", (list(batch.runs.values()),))}
    lost = [f"{run_id} ({status_name(final[run_id]) if run_id in final else 'unreadable'}"
            f"{', ' + failures[run_id] if failures.get(run_id) and final.get(run_id) != COMPLETED else ''})"
            for run_id in batch.ids if final.get(run_id) != COMPLETED]
    missing = [(run_id, node) for run_id in batch.ids for node in NODES if counts.get((run_id, node), 0) < 1]
    assert all(r["task"] for r in log), "the graph did not see its LangGraph task id: duplicates cannot be judged"
    executions: dict[tuple[str, str], list[dict]] = {}
    for row in log:
        executions.setdefault((row["run_id"], row["node"]), []).append(row)
    expected, real = [], []
    for key, count in sorted(counts.items()):
        if count <= 1:
            continue
        rows = executions.get(key, [])
        last = rows[-1] if rows else None
        reasons, notes = [], []
        for earlier in rows[:-1]:
            if earlier["task"] != last["task"]:
                if earlier["task"] in recorded or not (earlier["pid"] in killed_pids or outage):
                    reasons.append(f"re-run as another task (step {earlier['step']} -> {last['step']})")
                else:
                    notes.append(f"re-run as another task (step {earlier['step']} -> {last['step']}) "
                                 "(expected: the earlier execution's checkpoint was never recorded)")
            elif earlier["pid"] in killed_pids:
                continue  # its worker was SIGKILLed between the effect and the checkpoint
            elif outage:
                continue  # a backend went away between the effect and the checkpoint
            else:
                reasons.append(f"no fault explains it ({earlier['worker']} pid {earlier['pid']} was not killed)")
        trace = ", ".join(f"{r['worker']}/pid {r['pid']}/step {r['step']}" for r in rows)
        text = f"{key[0]}:{key[1]} x{count} [{trace}]"
        (real if reasons else expected).append(text + (f": {'; '.join(reasons or notes)}" if reasons or notes else ""))
    bad_trails = []
    for run_id, thread in batch.runs.items():
        if final.get(run_id) != COMPLETED:
            continue
        trail = thread_values(client, thread).get("trail")
        if trail != list(NODES):
            bad_trails.append(f"{run_id}: {trail}")
    return Verdict(lost, missing, sum(1 for c in counts.values() if c > 1),
                   len({run_id for (run_id, _), c in counts.items() if c > 1}), expected, real, bad_trails)


def rescued(mesh: Mesh, batch: Batch) -> list[str]:
    """Runs of the batch the api's reconciler re-published: Postgres said they should progress,
    no live worker held them and no queue message brought them back for its quiet period."""
    found = set()
    text = mesh.log_path("api").read_text(errors="replace")
    for line in text.splitlines():
        if "re-publishing run" in line:
            found.update(run_id for run_id in batch.runs if run_id in line)
    return sorted(found)


def record(figures, mesh: Mesh, batch: Batch, verdict: Verdict) -> None:
    figures.runs = len(batch.runs)
    rescues = rescued(mesh, batch)
    figures.rescued = len(rescues)
    figures.notes.extend(f"rescued by the reconciler, not by the queue: {r}" for r in rescues)
    figures.lost = len(verdict.lost)
    figures.duplicated = verdict.duplicated
    figures.expected_duplicates = len(verdict.expected)
    figures.real_duplicates = len(verdict.real)
    figures.notes.extend(f"expected duplicate {d}" for d in verdict.expected)
    figures.notes.extend(f"REAL duplicate {d}" for d in verdict.real)
    figures.notes.extend(f"LOST {d}" for d in verdict.lost)
    figures.notes.extend(f"state trail {d}" for d in verdict.bad_trails)


def assert_no_loss(verdict: Verdict) -> None:
    assert not verdict.lost, f"runs lost (not COMPLETED):\n{verdict.describe()}"
    assert not verdict.missing_effects, f"nodes whose effect never happened:\n{verdict.describe()}"
    assert not verdict.real, f"completed nodes ran again:\n{verdict.describe()}"
    assert not verdict.bad_trails, f"node writes applied twice or missing in the final state:\n{verdict.describe()}"


def active_runs(mesh: Mesh, name: str) -> int | None:
    try:
        status = worker_stub(mesh.address(name)).GetWorkerStatus(wpb.GetWorkerStatusRequest(), timeout=2)
    except grpc.RpcError:
        return None
    return len(status.active_runs)


def workers(mesh: Mesh) -> list[str]:
    return [n for n in mesh.service_names if n.startswith("worker")]


# -- scenarios ------------------------------------------------------------------------------------

def test_kill_storm(healthy, client, fault_figures):
    """36 runs; a random worker (a busy one when there is one) is SIGKILLed every 1-2 s and
    started again at once, until every run has ended (at most MAX_KILLS kills)."""
    mesh = healthy
    figures = fault_figures("kill storm")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    figures.notes.append(f"random seed {seed}")
    batch = Batch("storm")
    add_runs(client, batch, 36, 0.3, 1.0)

    killed_pids: set[int] = set()
    state = {"kills": 0, "last_kill": None, "next": time.monotonic() + rng.uniform(1, 2), "interrupted": 0}

    def storm() -> None:
        if state["kills"] >= MAX_KILLS or time.monotonic() < state["next"]:
            return
        names = workers(mesh)
        busy = [n for n in names if (active_runs(mesh, n) or 0) > 0]
        victim = rng.choice(busy or names)
        pid = mesh.pid(victim)
        state["interrupted"] += active_runs(mesh, victim) or 0
        if pid is not None:
            killed_pids.add(pid)
        mesh.stop_service(victim, kill=True)
        state["kills"] += 1
        state["last_kill"] = time.monotonic()
        # Right away, without waiting for it to serve: the next kill may land while it boots.
        # Its runs resume elsewhere (or here) from their checkpoints.
        mesh.start_service(victim, wait=False)
        state["next"] = time.monotonic() + rng.uniform(1, 2)

    final = wait_batch(client, batch, during=storm)
    ended_at = time.monotonic()
    figures.kills = state["kills"]
    figures.recover_seconds = None if state["last_kill"] is None else ended_at - state["last_kill"]
    figures.notes.append(f"{state['interrupted']} executions were running on the killed workers")
    if state["last_kill"] is not None:
        late = sorted(((t - state["last_kill"], r) for r, t in batch.ended.items()), reverse=True)[:3]
        figures.notes.append("last runs to end, seconds after the last kill: "
                             + ", ".join(f"{r} {d:.1f}" for d, r in late))
    verdict = judge(mesh, client, batch, final, killed_pids=killed_pids, outage=False)
    record(figures, mesh, batch, verdict)

    assert state["kills"] > 0, "the batch ended before the first kill: no fault was injected"
    assert_no_loss(verdict)
    # Each kill cuts off at most its worker's slots (each execution may repeat the nodes it
    # ran ahead of its last recorded checkpoint).
    assert verdict.duplicated_runs <= state["kills"] * CONCURRENCY, verdict.describe()


@pytest.mark.parametrize("backend", ["postgres", "nats"])
def test_backend_outage(healthy, client, fault_figures, backend):
    """~30 runs; once a quarter of them completed, Postgres (or NATS) is stopped for a few
    seconds and started again. Everything accepted completes, nothing completed runs twice."""
    mesh = healthy
    figures = fault_figures(f"{backend} outage")
    batch = Batch(f"{backend}-outage")
    add_runs(client, batch, 30, 0.3, 0.9)

    before = wait_batch(client, batch, until=lambda s: completed(s) >= len(batch.runs) // 4, timeout=120)
    server = mesh.postgres if backend == "postgres" else mesh.nats
    busy = sum(active_runs(mesh, n) or 0 for n in workers(mesh))
    server.stop()
    try:
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a condition
    finally:
        server.start()
    back_at = time.monotonic()
    figures.outages = 1
    figures.notes.append(f"{completed(before)} runs completed and {busy} executing when {backend} stopped")

    final = wait_batch(client, batch)
    figures.recover_seconds = time.monotonic() - back_at
    verdict = judge(mesh, client, batch, final, killed_pids=set(), outage=True)
    record(figures, mesh, batch, verdict)

    if backend == "nats":
        # Clients' streams: every accepted run's event log still ends with its completion.
        unfinished = []
        for run_id in batch.ids:
            if final.get(run_id) != COMPLETED:
                continue
            seen = statuses_of(stream_events(client, run_id, timeout=60))
            if not seen or seen[-1] != "RUN_STATUS_COMPLETED":
                unfinished.append(f"{run_id}: {seen}")
        figures.notes.extend(f"event stream does not end COMPLETED: {u}" for u in unfinished)
        assert not unfinished, unfinished

    assert_no_loss(verdict)
    # A backend stop can cut off at most the executions in flight at that moment (each may
    # repeat the nodes it ran ahead of its last recorded checkpoint).
    assert verdict.duplicated_runs <= SLOTS, verdict.describe()


def test_rolling_drain(healthy, client, fault_figures):
    """Under load, each worker in turn is drained (WorkerService.Drain, 1 s grace) and, once
    idle, stopped gracefully and started again. Nothing is lost and nothing repeats: a drained
    run stops at a step boundary with its checkpoint saved."""
    mesh = healthy
    figures = fault_figures("rolling drain")
    batch = Batch("drain")
    add_runs(client, batch, 24, 0.4, 1.2)
    # Load first: runs executing on the workers.
    wait_batch(client, batch, until=lambda s: sum(1 for v in s.values() if v == RUNNING) >= 4 or completed(s) > 0,
               timeout=60)

    handed_back = 0
    restarted_at = None
    for name in workers(mesh):
        active = active_runs(mesh, name) or 0
        status = worker_stub(mesh.address(name)).Drain(wpb.DrainRequest(grace_seconds=1), timeout=10).status
        assert status.draining, status
        add_runs(client, batch, 8, 0.4, 1.2)  # the load goes on while this worker drains
        wait_for(lambda: active_runs(mesh, name) == 0, 60, interval=0.2,
                 message=f"{name} to finish or hand back its runs")
        handed_back += active
        mesh.stop_service(name)  # graceful: SIGTERM, it is idle already
        mesh.start_service(name)
        restarted_at = time.monotonic()
    figures.outages = len(workers(mesh))
    figures.notes.append(f"{handed_back} executions were active on workers when their drain began")

    final = wait_batch(client, batch)
    figures.recover_seconds = time.monotonic() - restarted_at
    verdict = judge(mesh, client, batch, final, killed_pids=set(), outage=False)
    record(figures, mesh, batch, verdict)

    assert_no_loss(verdict)
    assert verdict.duplicated == 0, f"a rolling drain repeated side effects:\n{verdict.describe()}"
