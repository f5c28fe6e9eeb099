"""Review phase: latency from Decide to the run's next RUNNING event (issue 3).

For each measured decision:
  1. (setup, not timed) CreateRun(graph="approval_workflow", input {"action": "refund",
     "target": "order-N", "amount": 1}) and StreamRun until the WAITING_FOR_APPROVAL status
     event; its sequence number is kept;
  2. StreamRun(run_id, after_sequence=<WAITING sequence>) is opened and read by its own task
     *before* Decide is sent, so no event can be missed and each event's arrival is stamped
     as it comes (after WAITING come approval_decided, QUEUED, RUNNING);
  3. ListApprovals(run_id) gives the approval id (this round trip also lets the stream open);
  4. the clock starts just before Decide(APPROVE, metadata gm-principal=bench) is sent and
     stops when the client receives the run's RUNNING status event. The Decide RPC's own time
     is reported too. The stream is then read to the terminal event (not timed) so that a
     sequential decision never overlaps the previous run's tail.

Decisions run one at a time ("sequential") and, with a second batch of runs, from C
concurrent clients ("concurrent").
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field

from bench.stats import percentile

GRAPH = "approval_workflow"
PRINCIPAL = ("gm-principal", "bench")
TERMINAL_NAMES = {"RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED"}

# Stages of decide -> RUNNING received, from the client's clock and the events' publish times
# (one machine, one clock). decide_rpc runs alongside the others and is not part of the sum.
STAGES = [
    ("decide_to_decided", "send Decide -> approval_decided event published (review: record decision)",
     None, "approval_decided"),
    ("decided_to_queued", "approval_decided published -> QUEUED published (resume job enqueued)",
     "approval_decided", "RUN_STATUS_QUEUED"),
    ("queue_wait", "QUEUED published -> RUNNING published (job delivery, claim on a worker)",
     "RUN_STATUS_QUEUED", "RUN_STATUS_RUNNING"),
    ("deliver", "RUNNING published -> received by client (JetStream -> api -> gRPC)",
     "RUN_STATUS_RUNNING", "received"),
]


@dataclass
class WaitingRun:
    run_id: str
    waiting_sequence: int


@dataclass
class ReviewSample:
    to_running_s: float  # Decide sent -> RUNNING status event received
    decide_rpc_s: float  # Decide sent -> Decide response received
    stages_ms: dict = field(default_factory=dict)


def _ms_summary(values: list[float]) -> dict:
    def r(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 2)

    return {"p50": r(percentile(values, 50)), "p90": r(percentile(values, 90)), "p99": r(percentile(values, 99)),
            "mean": r(sum(values) / len(values) if values else math.nan),
            "max": r(max(values) if values else math.nan)}


def summarize(name: str, concurrency: int, runs: int, samples: list[ReviewSample], failed: int,
              wall_s: float) -> dict:
    stages = {}
    for stage, desc, _a, _b in STAGES:
        values = [s.stages_ms[stage] for s in samples if stage in s.stages_ms]
        if values:
            st = _ms_summary(values)
            stages[stage] = {"p50": st["p50"], "p99": st["p99"], "mean": st["mean"], "what": desc}
    return {
        "name": name,
        "concurrency": concurrency,
        "runs": runs,
        "completed": len(samples),
        "failed": failed,
        "wall_s": round(wall_s, 3),
        "decisions_per_s": round(len(samples) / wall_s, 2) if wall_s > 0 else None,
        "decide_to_running_ms": _ms_summary([s.to_running_s * 1000 for s in samples]),
        "decide_rpc_ms": _ms_summary([s.decide_rpc_s * 1000 for s in samples]),
        "stages_ms": stages,
    }


class _Clients:
    """One api channel (RunService) and one review channel (ReviewService) per client task."""

    def __init__(self, api_address: str, review_address: str, n: int):
        from graphmesh.client import aio_channel, async_api_client
        from graphmesh.v1 import review_service_pb2_grpc

        self.api = [async_api_client(api_address) for _ in range(n)]
        # graphmesh.client.review_stub() is synchronous; the same stub over a grpc.aio channel
        # keeps concurrent decisions on one event loop without blocking it.
        self.review_channels = [aio_channel(review_address) for _ in range(n)]
        self.review = [review_service_pb2_grpc.ReviewServiceStub(ch) for ch in self.review_channels]

    async def ready(self) -> None:
        for c in self.api:
            await c.channel.channel_ready()
        for ch in self.review_channels:
            await ch.channel_ready()

    async def close(self) -> None:
        for c in self.api:
            await c.channel.close()
        for ch in self.review_channels:
            await ch.close()


async def review_phase(api_address: str, review_address: str, runs: int, concurrency: int = 8,
                       warmup: int = 3, setup_concurrency: int = 16, say=None) -> dict:
    """Returns {"sequential": summary, "concurrent": summary | None, ...}; concurrency <= 1 skips
    the concurrent batch."""
    from graphmesh.jsonvalues import to_struct
    from graphmesh.v1 import review_service_pb2 as rpb
    from graphmesh.v1 import run_pb2
    from graphmesh.v1 import run_service_pb2 as pb

    say = say or (lambda s: None)
    waiting_status = run_pb2.RunStatus.Value("RUN_STATUS_WAITING_FOR_APPROVAL")
    running_status = run_pb2.RunStatus.Value("RUN_STATUS_RUNNING")
    completed_status = run_pb2.RunStatus.Value("RUN_STATUS_COMPLETED")
    terminal = {run_pb2.RunStatus.Value(n) for n in TERMINAL_NAMES}
    pending = rpb.ApprovalStatus.Value("APPROVAL_STATUS_PENDING")
    approved = rpb.ApprovalStatus.Value("APPROVAL_STATUS_APPROVED")
    approve = rpb.DecisionKind.Value("DECISION_KIND_APPROVE")

    n_clients = max(concurrency, setup_concurrency, 1)
    clients = _Clients(api_address, review_address, n_clients)
    await clients.ready()

    async def make_waiting(k: int, i: int) -> WaitingRun:
        stub = clients.api[k].runs
        request = pb.CreateRunRequest(graph=GRAPH, input=to_struct(
            {"action": "refund", "target": f"order-{i}", "amount": 1}))
        created = await stub.CreateRun(request, timeout=30)
        run_id = created.run.run_id
        call = stub.StreamRun(pb.StreamRunRequest(run_id=run_id), timeout=60)
        try:
            async for reply in call:
                ev = reply.event
                if ev.WhichOneof("kind") == "status_changed":
                    if ev.status_changed.status == waiting_status:
                        return WaitingRun(run_id, ev.sequence)
                    if ev.status_changed.status in terminal:
                        break
        finally:
            call.cancel()
        raise RuntimeError(f"run {run_id} ended without WAITING_FOR_APPROVAL")

    async def prepare(n: int, offset: int) -> list[WaitingRun]:
        out: list[WaitingRun] = []
        counter = iter(range(n))

        async def worker(k: int) -> None:
            for i in counter:
                try:
                    out.append(await make_waiting(k, offset + i))
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    print(f"review setup run {offset + i} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

        await asyncio.gather(*(worker(k) for k in range(min(setup_concurrency, max(n, 1)))))
        return out

    async def decide_one(k: int, run: WaitingRun) -> ReviewSample:
        runs_stub, review = clients.api[k].runs, clients.review[k]
        seen: dict[str, float] = {}  # mark -> publish time (wall clock)
        got_running = asyncio.get_running_loop().create_future()
        got_running.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "not retrieved"
        final: dict = {}
        call = runs_stub.StreamRun(pb.StreamRunRequest(run_id=run.run_id, after_sequence=run.waiting_sequence),
                                   timeout=60)

        async def read() -> None:
            try:
                async for reply in call:
                    now, wall = time.perf_counter(), time.time()
                    ev = reply.event
                    kind = ev.WhichOneof("kind")
                    stamp = ev.time.ToNanoseconds() / 1e9
                    if kind == "approval_decided":
                        seen.setdefault("approval_decided", stamp)
                    elif kind == "status_changed":
                        status = ev.status_changed.status
                        seen.setdefault(run_pb2.RunStatus.Name(status), stamp)
                        if status == running_status and not got_running.done():
                            seen["received"] = wall
                            got_running.set_result(now)
                        if status in terminal:
                            final["status"] = status
                            break
            except Exception as exc:  # noqa: BLE001 - surfaced through the future
                if not got_running.done():
                    got_running.set_exception(exc)
                final["error"] = exc
            finally:
                if not got_running.done():
                    got_running.set_exception(RuntimeError(f"stream of {run.run_id} ended before RUNNING"))

        reader = asyncio.create_task(read())
        try:
            approval_id = None
            for _ in range(50):
                listed = await review.ListApprovals(
                    rpb.ListApprovalsRequest(run_id=run.run_id, statuses=[pending]), timeout=10)
                if listed.approvals:
                    approval_id = listed.approvals[0].approval_id
                    break
                await asyncio.sleep(0.05)
            if approval_id is None:
                raise RuntimeError(f"no pending approval for run {run.run_id}")

            wall0 = time.time()
            t0 = time.perf_counter()
            response = await review.Decide(rpb.DecideRequest(approval_id=approval_id, kind=approve, comment="bench"),
                                           metadata=(PRINCIPAL,), timeout=30)
            t_decided = time.perf_counter()
            if response.approval.status != approved:
                raise RuntimeError(f"approval {approval_id}: status {rpb.ApprovalStatus.Name(response.approval.status)}")
            t_running = await asyncio.wait_for(asyncio.shield(got_running), 60)
            await asyncio.wait_for(reader, 120)  # let the run finish, untimed
        finally:
            if not reader.done():
                reader.cancel()
            call.cancel()
        if final.get("status") != completed_status:
            raise RuntimeError(f"run {run.run_id} ended with {final.get('status')} {final.get('error', '')}")
        stages = {}
        for name, _desc, a, b in STAGES:
            start = wall0 if a is None else seen.get(a)
            end = seen.get(b)
            if start is not None and end is not None:
                stages[name] = (end - start) * 1000
        return ReviewSample(t_running - t0, t_decided - t0, stages)

    async def decide_all(batch: list[WaitingRun], c: int) -> tuple[list[ReviewSample], int, float]:
        samples: list[ReviewSample] = []
        failed = 0
        it = iter(batch)

        async def worker(k: int) -> None:
            nonlocal failed
            for run in it:
                try:
                    samples.append(await decide_one(k, run))
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    failed += 1
                    print(f"review decision for {run.run_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(max(c, 1))))
        return samples, failed, time.perf_counter() - t0

    result: dict = {"graph": GRAPH, "runs": runs, "concurrency": concurrency, "warmup": warmup}
    t_start = time.perf_counter()
    try:
        say(f"review phase: {warmup} warm-up + {runs} runs waiting for approval ...")
        batch = await prepare(warmup + runs, 0)
        setup_failed = warmup + runs - len(batch)
        if warmup:
            await decide_all(batch[:warmup], 1)
        samples, failed, wall = await decide_all(batch[warmup:], 1)
        result["sequential"] = summarize("sequential", 1, runs, samples, failed + max(setup_failed - warmup, 0), wall)
        s = result["sequential"]["decide_to_running_ms"]
        say(f"  sequential: decide -> RUNNING p50 {s['p50']} ms, p99 {s['p99']} ms")
        result["concurrent"] = None
        if concurrency > 1:
            say(f"review phase: {runs} more runs, decisions from {concurrency} concurrent clients ...")
            batch = await prepare(runs, warmup + runs)
            samples, failed, wall = await decide_all(batch, concurrency)
            result["concurrent"] = summarize("concurrent", concurrency, runs, samples,
                                             failed + runs - len(batch), wall)
            s = result["concurrent"]["decide_to_running_ms"]
            say(f"  concurrent: decide -> RUNNING p50 {s['p50']} ms, p99 {s['p99']} ms")
    finally:
        await clients.close()
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    return result


def _f(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def render_review(review: dict) -> str:
    lines = [
        f"review: Decide(APPROVE) -> the run's next RUNNING event on StreamRun, graph '{review['graph']}' "
        f"({review['runs']} decisions per mode, +{review['warmup']} warm-up; {review['total_seconds']} s incl. setup)",
    ]
    header = (f"{'mode':<22}{'decisions/s':>12}{'run p50':>9}{'run p99':>9}{'run mean':>10}"
              f"{'rpc p50':>9}{'rpc p99':>9}{'rpc mean':>10}{'failed':>8}")
    lines += [header + "   (ms; run = Decide sent -> RUNNING received, rpc = Decide alone)", "-" * len(header)]
    modes = [review.get("sequential"), review.get("concurrent")]
    for m in modes:
        if not m:
            continue
        label = "sequential" if m["concurrency"] == 1 else f"concurrent (C={m['concurrency']})"
        r, d = m["decide_to_running_ms"], m["decide_rpc_ms"]
        lines.append(f"{label:<22}{_f(m['decisions_per_s']):>12}{_f(r['p50']):>9}{_f(r['p99']):>9}{_f(r['mean']):>10}"
                     f"{_f(d['p50']):>9}{_f(d['p99']):>9}{_f(d['mean']):>10}{m['failed']:>8}")
    for m in modes:
        if not m or not m["stages_ms"]:
            continue
        label = "sequential" if m["concurrency"] == 1 else f"concurrent (C={m['concurrency']})"
        lines.append(f"review latency by stage, {label} (ms; means add up to the mean decide -> RUNNING):")
        for name, st in m["stages_ms"].items():
            lines.append(f"  {name:<18} p50 {st['p50']:7.2f}  p99 {st['p99']:7.2f}  mean {st['mean']:7.2f}   {st['what']}")
    return "\n".join(lines)
