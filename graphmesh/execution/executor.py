"""Executes one claimed run: the graph under AsyncPostgresSaver, events, status changes.

Shared by workers (queued runs) and the api (synchronous runs). Each execution gets its
own saver: one AsyncPostgresSaver serialises all its calls behind a lock, so sharing one
between concurrent runs would make them take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import nats.errors
import psycopg
from langgraph.errors import GraphDrained, GraphRecursionError
from langgraph.runtime import RunControl
from langgraph.types import Command
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from graphmesh import secrets
from graphmesh.errors import ExecutionError, GraphmeshError, Unavailable
from graphmesh.execution.errors import IncompatibleCheckpoint, NodeFailed, NodePaused
from graphmesh.execution.interrupts import approval_requests, carry_decisions, resume_input
from graphmesh.execution.migration import Applied, MigrationFailed, migrate_thread
from graphmesh.execution.policies import ACTOR as POLICY_ACTOR
from graphmesh.execution.policies import PolicyGate, PolicyViolation, audit_details
from graphmesh.execution.run_options import INTERNAL_MODES, RunOptions, stopped_at
from graphmesh.execution.saver import StateTooLarge, saver_for
from graphmesh.execution.sink import EventSink
from graphmesh.guard import NodeDisabled, gate_nodes
from graphmesh.jsonvalues import jsonable, to_struct, to_value
from graphmesh.lifecycle import AuditEntry, RunLifecycle
from graphmesh.messages import migration_to_proto
from graphmesh.secrets import secret_scope
from graphmesh.store import (
    ApprovalStore,
    Claim,
    LeaseLost,
    RunError,
    RunRecord,
    RunStatus,
    RunStore,
    cancel_error,
)
from graphmesh.store.leases import LeaseFence
from graphmesh.telemetry.metrics import RUN_DURATION, RUNS_FINISHED
from graphmesh.telemetry.tracing import SpanKind, Status, StatusCode, run_span, tracer
from graphmesh.v1 import run_pb2

log = logging.getLogger(__name__)

Heartbeat = Callable[[], Awaitable[None]]

# What _input returns for a re-execution whose run already stopped at one of its static
# interrupts (the crash came before the run was recorded COMPLETED).
_ALREADY_STOPPED = object()


def refusal(metadata: dict, run: RunRecord, spec, detail: str) -> str:
    """The operator message for a thread this run's code cannot resume: both versions, and why."""
    written = metadata.get("state_schema_version")
    by = f"{metadata.get('graph', run.graph)}@{metadata.get('graph_version', '?')}"
    return (f"thread {run.thread_id} was last checkpointed by {by} (state schema {written}); this run executes "
            f"{spec.name}@{spec.version} (state schema {spec.state_schema_version}) and {detail}. Run it on "
            f"version {metadata.get('graph_version', '?')} (graph_version pin) or register a migration.")


@dataclass
class _Execution:
    """What the worker can do to a run while it executes: cancel it, drain it."""

    task: asyncio.Task
    control: RunControl = field(default_factory=RunControl)
    cancel: tuple[str, str] | None = None  # (reason, action)
    lease_lost: bool = False
    audit: AuditEntry | None = None  # a policy violation's audit record, committed with the FAILED transition


class RunExecutor:
    def __init__(
        self,
        *,
        store: RunStore,
        js: JetStreamContext,
        pool: AsyncConnectionPool,
        registry: Any,
        lease_seconds: float,
        ack_wait_seconds: float = 30.0,
    ) -> None:
        self._store = store
        self._approvals = ApprovalStore(store)
        self.lifecycle = RunLifecycle(store, js)
        self._js = js
        self._pool = pool
        self._registry = registry
        self._lease_seconds = lease_seconds
        # Renew the lease and the queue message well before either can lapse.
        self._heartbeat_seconds = min(lease_seconds, ack_wait_seconds) / 3
        self._executions: dict[str, _Execution] = {}

    def request_cancel(self, run_id: str, reason: str, action: str) -> bool:
        """Stops a run executing here at once (its current node is cancelled); it ends
        CANCELLED. False if the run is not executing in this process."""
        execution = self._executions.get(run_id)
        if execution is None:
            return False
        if execution.cancel is not None:
            return True  # already cancelling: a second cancel must not interrupt recording it
        execution.cancel = (reason, action)
        execution.task.cancel()
        return True

    @property
    def registry(self) -> Any:
        return self._registry

    def serves(self, graph: str, version: str) -> bool:
        """Whether this process loads that graph version (a job for another is left to others)."""
        return any(s.name == graph and s.version == version for s in self._registry.specs())

    def request_drain(self) -> None:
        """Asks every run executing here to stop at its next step boundary, checkpoint
        saved; each is then handed back to the queue (status QUEUED)."""
        for execution in self._executions.values():
            execution.control.request_drain("worker draining")

    async def execute(self, claim: Claim, *, heartbeat: Heartbeat | None = None, parent=None) -> RunRecord:
        """Runs the graph to its next resting point and records the outcome. Raises
        LeaseLost if the run was taken away meanwhile. A drained run comes back QUEUED.
        `parent`: the trace context the job message carried (default: the run's trace)."""
        run = claim.run
        execution = _Execution(asyncio.current_task())
        if run.cancel_reason is not None:  # asked while a worker that then died held it
            execution.cancel = (run.cancel_reason, run.cancel_action or "interrupt")
        self._executions[run.run_id] = execution
        started = time.perf_counter()
        try:
            with run_span("run.execute", run, parent=parent, kind=SpanKind.CONSUMER,
                          **{"graphmesh.resumed": claim.resumed}) as span:
                final = await self._execute(claim, execution, heartbeat)
                span.set_attribute("graphmesh.status", final.status.value)
                if final.status is RunStatus.FAILED and final.error is not None:
                    span.set_status(Status(StatusCode.ERROR, final.error.code))
            labels = {"graph": run.graph, "graph_version": final.versions["graph_version"],
                      "status": final.status.value}
            RUNS_FINISHED.add(1, labels)
            RUN_DURATION.record(time.perf_counter() - started, labels)
            return final
        finally:
            self._executions.pop(run.run_id, None)

    async def _execute(self, claim: Claim, execution: _Execution, heartbeat: Heartbeat | None) -> RunRecord:
        run = claim.run
        seq = claim.event_seq
        if claim.resumed:
            # An earlier execution may have published events Postgres never counted.
            seq = max(seq, await self.lifecycle.next_event_seq(run.run_id))
        events = EventSink(self._js, run.run_id, seq)
        await events.emit_status(RunStatus.RUNNING, claim.previous_status)

        keepalive = asyncio.create_task(self._keep_lease(claim, heartbeat, execution))
        interrupts: list = []
        try:
            if execution.cancel is not None:
                raise asyncio.CancelledError
            target, error, interrupts = await self._run_graph(claim, events, execution)
        except asyncio.CancelledError:
            if execution.lease_lost:
                raise LeaseLost(run.run_id) from None
            if execution.cancel is None:
                raise  # the worker is stopping: the lease lapses and the run is redelivered
            asyncio.current_task().uncancel()
            reason, action = execution.cancel
            return await self._finish(run, claim.epoch, RunStatus.CANCELLED, cancel_error(reason), events,
                                     roll_back=action == "rollback")
        except GraphmeshError:
            raise  # e.g. Unavailable: leave the run for redelivery once the outage ends
        except Exception as exc:
            # A bug of ours must still end the run visibly, not leave it RUNNING.
            log.exception("run %s: unexpected executor error", run.run_id)
            target, error = RunStatus.FAILED, RunError("INTERNAL", f"internal error: {type(exc).__name__}")
        finally:
            keepalive.cancel()
        if interrupts and target is RunStatus.WAITING_FOR_APPROVAL:
            return await self._wait_for_approval(run, claim.epoch, interrupts, events)
        return await self._finish(run, claim.epoch, target, error, events, audit=execution.audit)

    async def _wait_for_approval(self, run: RunRecord, epoch: int, interrupts: list, events: EventSink) -> RunRecord:
        """Rests the run as WAITING_FOR_APPROVAL with one approval request per interrupt,
        recorded in the same transaction, then announces them."""
        spec = self._registry.get(run.graph, run.versions["graph_version"])
        # An interrupt's payload is stored and shown to reviewers: never with a secret in it.
        requests = [dataclasses.replace(r, payload=secrets.redact_value(r.payload))
                    for r in approval_requests(spec, run, interrupts)]
        with tracer.start_as_current_span("approval.request", attributes={
                "graphmesh.run_id": run.run_id, "graphmesh.approvals": len(requests),
                "graphmesh.nodes": sorted({r.node for r in requests}),
                "graphmesh.approval_ids": [r.approval_id for r in requests]}):
            return await self._rest_waiting(run, epoch, requests, events)

    async def _rest_waiting(self, run: RunRecord, epoch: int, requests: list, events: EventSink) -> RunRecord:
        await events.flush()  # one approval_requested event each follows, then the status
        return await self.lifecycle.rest_waiting(run, epoch, requests, first_seq=events.next_seq)

    async def _finish(
        self,
        run: RunRecord,
        epoch: int | None,
        target: RunStatus,
        error: RunError | None,
        events: EventSink,
        *,
        roll_back: bool = False,
        audit: AuditEntry | None = None,
    ) -> RunRecord:
        """Records the execution's outcome after the events it numbered (graphmesh/lifecycle.py)."""
        await events.flush()
        return await self.lifecycle.finish(run, epoch, target, error, event_seq=events.next_seq,
                                           roll_back=roll_back, audit=audit)

    async def _run_graph(
        self, claim: Claim, events: EventSink, execution: _Execution
    ) -> tuple[RunStatus, RunError | None, list]:
        """Streams the graph to its next resting point: (status, error, interrupts)."""
        run = claim.run
        version = run.versions["graph_version"]
        control = execution.control
        try:
            spec = self._registry.get(run.graph, version)
        except GraphmeshError as exc:
            return RunStatus.FAILED, RunError("GRAPH_LOAD_FAILED", exc.message), []
        config = {
            "configurable": {"thread_id": run.thread_id},
            # The run's own id as LangGraph's run_id: a re-execution continues this run.
            "run_id": uuid.UUID(run.run_id),
            # Copied into every checkpoint's metadata, so a checkpoint says which code wrote it.
            "metadata": {**run.versions, "graph": run.graph, "gm_run_id": run.run_id,
                         "gm_attempt": run.attempt},
            "recursion_limit": spec.limits.max_steps,
        }
        # The client's LangGraph options (configurable, tags, recursion limit; the rest below).
        options = RunOptions.from_json(run.options)
        if run.options:
            options.apply_config(config, spec.limits.max_steps)
        timeout = asyncio.timeout(spec.limits.run_timeout_seconds)
        # The graph's serializer (allow-listed types, no secrets) and state size limit; every
        # checkpoint write is fenced by this claim's lease (a stale execution cannot write).
        fence = LeaseFence(run.run_id, claim.epoch, run.lease_owner, idle_seconds=self._lease_seconds)
        saver = saver_for(self._pool, spec, fence=fence)
        # Nodes first pass the manifest's node policies; they may read the graph's secrets.
        gate = PolicyGate(self._store, run, spec, saver)
        async with contextlib.AsyncExitStack() as stack:
            # While the graph runs, a refused write stops it at once; once it stopped, a late
            # write refused after the run rested (e.g. CANCELLED) must not touch the execution.
            saver.on_lease_lost = lambda: self._lease_lost(claim, execution)
            stack.callback(setattr, saver, "on_lease_lost", None)
            try:
                # A graph factory sees the run's config (as under the LangGraph server).
                graph = await stack.enter_async_context(
                    self._registry.graph_for_run(run.graph, version, {**config, "metadata": {
                        **run.metadata, **config["metadata"]}}, checkpointer=saver))
            except GraphmeshError as exc:  # e.g. the graph's module does not import
                log.error("run %s: cannot load %s@%s: %s", run.run_id, run.graph, version, exc.message)
                return RunStatus.FAILED, RunError("GRAPH_LOAD_FAILED", exc.message), []
            try:
                with secret_scope(spec.name, spec.secrets), gate_nodes(gate):
                    return await self._run_stream(graph, config, claim, spec, events, control, timeout, options)
            except PolicyViolation as exc:
                log.warning("run %s: node %s refused by its %s policy", run.run_id, exc.node, exc.policy)
                execution.audit = AuditEntry(POLICY_ACTOR, "policy_violation", audit_details(exc, run))
                return RunStatus.FAILED, RunError("POLICY_VIOLATION", str(exc), exc.node), []
            except StateTooLarge as exc:
                return RunStatus.FAILED, RunError("STATE_TOO_LARGE", f"run {run.run_id}: {exc}"), []

    async def _run_stream(self, graph, config, claim: Claim, spec, events: EventSink, control: RunControl,
                          timeout, options: RunOptions) -> tuple[RunStatus, RunError | None, list]:
        run = claim.run
        try:
            graph_input, decided = await self._input(graph, config, claim, spec, events, options)
            if graph_input is _ALREADY_STOPPED:
                return RunStatus.COMPLETED, None, []
            async with timeout:
                interrupts = await self._stream(graph, graph_input, config, events, control, spec.durability, options)
                if decided and (carried := carry_decisions(decided, interrupts)):
                    # The migrated checkpoint raised its interrupts again, under new ids.
                    config["configurable"].pop("checkpoint_id", None)  # from the thread's latest checkpoint
                    interrupts = await self._stream(graph, Command(resume=carried), config, events, control,
                                                    spec.durability, options)
        except GraphDrained:
            return RunStatus.QUEUED, None, []  # stopped at a step boundary: hand it back
        except IncompatibleCheckpoint as exc:
            return RunStatus.FAILED, RunError("INCOMPATIBLE_CHECKPOINT", str(exc)), []
        except NodePaused as exc:
            return RunStatus.PAUSED, RunError(
                "NODE_DISABLED", f"paused before node '{exc.node}': {exc.reason}", exc.node), []
        except GraphRecursionError:
            return RunStatus.FAILED, RunError(
                "STEP_LIMIT_EXCEEDED", f"run exceeded its limit of {options.step_limit(spec.limits.max_steps)} steps"), []
        except TimeoutError:
            if not timeout.expired():
                raise Unavailable(f"a dependency timed out during run {run.run_id}") from None
            return RunStatus.FAILED, RunError(
                "RUN_TIMEOUT", f"run exceeded its limit of {spec.limits.run_timeout_seconds:g} s"), []
        except NodeFailed as exc:
            return RunStatus.FAILED, RunError("NODE_FAILED", f"node '{exc.node}' failed: {exc}", exc.node), []
        except (PolicyViolation, StateTooLarge):
            raise  # _run_graph records these (a violation with its audit record)
        except ExecutionError as exc:  # any other error that ends the run carries its own code
            return RunStatus.FAILED, RunError(exc.run_error_code, str(exc), getattr(exc, "node", "") or ""), []
        except GraphmeshError:
            raise  # e.g. Unavailable: an outage; the run is redelivered and resumes later
        except (psycopg.OperationalError, nats.errors.Error) as exc:
            # Infrastructure, not the graph: the run is redelivered and resumes later.
            log.warning("run %s: dependency unavailable: %s", run.run_id, exc)
            raise Unavailable(f"a dependency was unavailable during run {run.run_id}") from exc
        except Exception as exc:  # a graph's own bug: readable code for the client, trace in the log
            log.exception("run %s failed", run.run_id)
            return RunStatus.FAILED, RunError("GRAPH_ERROR", f"{type(exc).__name__}: {exc}"), []
        if interrupts:
            return RunStatus.WAITING_FOR_APPROVAL, None, interrupts
        return RunStatus.COMPLETED, None, []

    async def _input(self, graph, config, claim: Claim, spec, events: EventSink,
                     options: RunOptions) -> tuple[Any, list]:
        """What to stream: the run's input on a first execution (its command in place of it,
        if it has one; from its checkpoint_id, if it branches); after approvals, the
        decisions for the interrupts the checkpoint waits on; after a crash or hand-back,
        None, to continue from this run's own last checkpoint (or _ALREADY_STOPPED when that
        checkpoint is where one of its static interrupts stops it). A thread last
        checkpointed under another state schema is migrated first, or refused
        (IncompatibleCheckpoint). Second: decisions (node, value) to give again to
        interrupts a migration re-raises."""
        run = claim.run
        thread = {"configurable": {"thread_id": run.thread_id}}
        if not claim.resumed:
            if options.checkpoint_id:
                await self._branch_from(graph, config, run, spec, options.checkpoint_id)
                return options.graph_input(run.input), []
            # Only the latest checkpoint's metadata is needed (its schema version): reading
            # the tuple spares building a whole StateSnapshot on every run's hot path.
            latest = await graph.checkpointer.aget_tuple(thread)
            await self._migrate_if_needed((latest.metadata if latest else None) or {}, claim, spec,
                                          graph.checkpointer, events)
            return options.graph_input(run.input), []
        state = await graph.aget_state(thread)
        migrated = await self._migrate_if_needed(state.metadata or {}, claim, spec, graph.checkpointer, events)
        if migrated is not None:
            state = await graph.aget_state(thread)
        own = bool(state.metadata) and state.metadata.get("gm_run_id") == run.run_id
        if run.resume_with is not None:
            if migrated is not None:
                return None, await self._decided_nodes(run, migrated)
            return resume_input(run.resume_with, {i.id for i in state.interrupts}), []
        if own:
            if await self._stopped_statically(graph, state, options):
                return _ALREADY_STOPPED, []
            return None, []
        if options.checkpoint_id:  # the branch has no checkpoint of its own yet: start it again
            await self._branch_from(graph, config, run, spec, options.checkpoint_id)
        return options.graph_input(run.input), []

    async def _branch_from(self, graph, config, run: RunRecord, spec, checkpoint_id: str) -> None:
        """Starts the run from one of its thread's checkpoints (LangGraph's time travel: a new
        branch of the thread). A past checkpoint is never migrated: one written under another
        state schema is refused."""
        at = {"configurable": {"thread_id": run.thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
        found = await graph.checkpointer.aget_tuple(at)
        if found is None:  # it existed when the run was created: pruned since
            raise IncompatibleCheckpoint(f"thread {run.thread_id} no longer has checkpoint {checkpoint_id} to start "
                                         "from (the retention sweeper may have pruned it)")
        metadata = found.metadata or {}
        written = metadata.get("state_schema_version")
        if written is not None and written != spec.state_schema_version:
            raise IncompatibleCheckpoint(refusal(metadata, run, spec, (
                f"checkpoint {checkpoint_id} is a past one: only a thread's latest checkpoint is migrated")))
        config["configurable"].update(checkpoint_ns="", checkpoint_id=checkpoint_id)

    async def _stopped_statically(self, graph, state, options: RunOptions) -> bool:
        """Whether the run's own latest checkpoint is where one of its static interrupts stops
        it: before a node about to run, or after one the step that wrote it ran. (Continuing
        with None would run past it: LangGraph treats that as the client's resume.)"""
        if not (options.interrupt_before or options.interrupt_after) or not state.next:
            return False
        if options.interrupt_before and stopped_at(options.interrupt_before, state.next):
            return True
        if options.interrupt_after and (state.metadata or {}).get("source") == "loop" and state.parent_config:
            ran = (await graph.aget_state(state.parent_config)).next
            return stopped_at(options.interrupt_after, ran)
        return False

    async def _migrate_if_needed(self, metadata: dict, claim: Claim, spec, saver, events: EventSink) -> Applied | None:
        """Continue (same schema), migrate (a declared path) or refuse (IncompatibleCheckpoint)."""
        run = claim.run
        written = metadata.get("state_schema_version")
        if written is None or written == spec.state_schema_version:
            return None
        steps = self._registry.migration_path(spec.name, written, spec.state_schema_version)
        if steps is None:
            raise IncompatibleCheckpoint(refusal(metadata, run, spec, (
                f"no migration path from state schema {written} to {spec.state_schema_version} is declared "
                "in the manifest")))
        try:
            transforms = [self._registry.transform(step) for step in steps]
            applied = await migrate_thread(saver, run.thread_id, steps, transforms=transforms,
                                           metadata={**run.versions, "graph": run.graph})
        except (MigrationFailed, GraphmeshError) as exc:
            detail = exc.message if isinstance(exc, GraphmeshError) else str(exc)
            raise IncompatibleCheckpoint(refusal(metadata, run, spec, f"its migration failed: {detail}")) from exc
        record = applied.record()
        await self._store.record_migration(run.run_id, claim.epoch, record)
        log.info("run %s: migrated thread %s from state schema %s to %s (%s)", run.run_id, run.thread_id,
                 written, spec.state_schema_version, "; ".join(applied.steps))
        await events.emit(checkpoint_migrated=migration_to_proto(record))
        return applied

    async def _decided_nodes(self, run: RunRecord, migrated: Applied) -> list[tuple[str, Any]]:
        """The run's recorded decisions as (node after migration, value)."""
        approvals, _ = await self._approvals.list(run_id=run.run_id, page_size=1000)
        return [(migrated.node_renames.get(a.node, a.node), run.resume_with[a.interrupt_id])
                for a in reversed(approvals) if a.interrupt_id in (run.resume_with or {})]

    async def _stream(self, graph, graph_input, config, events: EventSink, control: RunControl, durability: str,
                      options: RunOptions) -> list[tuple[str, Any]]:
        """Streams the graph, publishing its events (and the stream chunks the run asked
        for); returns the interrupts it stopped at."""
        interrupts: list[tuple[str, Any]] = []
        saver = graph.checkpointer
        # Chunks of the modes the client asked for go out as they are; graphmesh's own events
        # still come from the root graph's tasks and custom modes alone. A run that asked for
        # none streams exactly as before (no subgraphs, two modes, no per-chunk work).
        requested = options.stream_modes
        subgraphs = bool(requested) and options.stream_subgraphs
        modes = [*INTERNAL_MODES, *(m for m in requested if m not in INTERNAL_MODES)]
        # Closed (awaited) before this returns or raises: LangGraph's checkpoint writes under way
        # finish while the run is still RUNNING under this lease, not after its status changed
        # (the lease fence would refuse them then, and the next execution would redo the step).
        stream = graph.astream(graph_input, config, stream_mode=modes, control=control, durability=durability,
                               subgraphs=subgraphs, **options.stream_kwargs(graph))
        active: dict[str, str] = {}  # task id -> node, to attribute custom writes
        step = 0
        async with contextlib.aclosing(stream):
            async for item in stream:
                if getattr(saver, "too_large", None) is not None:
                    raise saver.too_large  # a step's checkpoint was refused: stop before anything else runs
                if requested:
                    namespace, mode, chunk = item if subgraphs else ((), *item)
                    if mode in requested:
                        await events.emit_chunk(mode, namespace, chunk)
                    if namespace or mode not in INTERNAL_MODES:
                        continue
                else:
                    mode, chunk = item
                if mode == "custom":
                    node = next(iter(active.values())) if len(active) == 1 else ""
                    await events.emit(custom=run_pb2.CustomProgress(node=node, data=to_value(_redacted(chunk))))
                elif "input" in chunk:
                    step += 1
                    active[chunk["id"]] = chunk["name"]
                    await events.emit(node_started=run_pb2.NodeStarted(
                        node=chunk["name"], task_id=chunk["id"], step=step))
                else:
                    active.pop(chunk["id"], None)
                    error = chunk.get("error")
                    if isinstance(error, NodeDisabled):
                        raise NodePaused(error.node, error.reason)
                    if isinstance(error, (PolicyViolation, StateTooLarge, LeaseLost)):
                        raise error
                    if error:
                        log.error("run %s: node %s failed", config["metadata"]["gm_run_id"], chunk["name"],
                                  exc_info=(type(error), error, error.__traceback__))
                        raise NodeFailed(chunk["name"], f"{type(error).__name__}: {error}")
                    if chunk.get("interrupts"):
                        interrupts.extend((chunk["name"], i) for i in chunk["interrupts"])
                        continue  # reported once the run rests, as approval requests
                    await events.emit(node_finished=run_pb2.NodeFinished(
                        node=chunk["name"], task_id=chunk["id"], step=step,
                        update=to_struct(_redacted(_update_of(chunk.get("result"))))))
        return interrupts

    def _lease_lost(self, claim: Claim, execution: _Execution) -> None:
        """Stops an execution whose run was taken away (LeaseLost once it unwinds)."""
        if not execution.lease_lost:
            log.warning("lost the lease of run %s; stopping it here", claim.run.run_id)
            execution.lease_lost = True
            execution.task.cancel()

    async def _keep_lease(self, claim: Claim, heartbeat: Heartbeat | None, execution: _Execution) -> None:
        """Renews the run's lease and its queue message until cancelled; stops the
        execution if another holder took the run, or if an operator asked to cancel it
        and the signal did not reach this worker."""
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            if heartbeat:
                try:
                    await heartbeat()
                except Exception as exc:  # NATS blip; the Postgres lease below still holds the run
                    log.warning("could not keep the queue message of run %s alive: %s", claim.run.run_id, exc)
            try:
                held = await self._store.renew_lease(claim.run.run_id, claim.epoch, self._lease_seconds)
            except Exception as exc:  # a blip; the lease outlives two missed renewals
                log.warning("could not renew the lease of run %s: %s", claim.run.run_id, exc)
                continue
            if held is None:
                self._lease_lost(claim, execution)
                return
            if held["cancel_reason"] is not None and execution.cancel is None:
                self.request_cancel(claim.run.run_id, held["cancel_reason"], held["cancel_action"] or "interrupt")
                return


def _redacted(value: Any) -> Any:
    """`value` with known secrets replaced, made JSON first: redact_value does not look inside
    LangChain messages (pydantic objects), which a node's update or custom data may hold.
    With no secret known, `value` itself (to_struct/to_value make it JSON anyway)."""
    return secrets.redact_value(jsonable(value)) if secrets.known() else value


def _update_of(result: Any) -> Any:
    # tasks-mode results are a list of (channel, value) writes or a dict update.
    if isinstance(result, list):
        return {channel: value for channel, value in result}
    return result
