"""Creating a run: the one path for CreateRun, InvokeRun and the scheduler.

Whoever asks (a client's RPC, or a schedule firing as its owner), a new run passes the
same checks in the same order: the caller's role and graph, the thread's owner, version
routing, admission limits (skipped for a retry of an idempotent request), the multitask
strategy, the LangGraph run options (graphmesh/execution/run_options.py), the graph's input
schema (a run without input must have a thread to continue, a checkpoint to branch from or
a command), the metadata limit and the webhook's outbound policy.
The caller is the principal of the current context (graphmesh.auth.principals).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from graphmesh.admission import admit
from graphmesh.bus import require_connected
from graphmesh.cancel import Canceller
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from graphmesh.execution.run_options import RunOptions, parse_options
from graphmesh.lifecycle import RunLifecycle
from graphmesh.messages import STRATEGY_NAMES
from graphmesh.routing import VersionRouter
from graphmesh.rpc.principal import caller
from graphmesh.store import NewRun, RunRecord, RunStore
from graphmesh.store.runs import request_fingerprint
from graphmesh.telemetry.metrics import RUNS_CREATED
from graphmesh.telemetry.tracing import traceparent
from graphmesh.webhooks.targets import OutboundPolicy

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 16 * 1024


def check_metadata(metadata) -> dict[str, str]:
    """A run's metadata within its limit (keys and values counted in characters)."""
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA_BYTES:
        raise InvalidArgument(f"metadata exceeds the limit of {MAX_METADATA_BYTES} bytes")
    return dict(metadata)


def _options_of(request):
    """A CreateRunRequest's options, None when it has none (InvokeRunRequest has no field)."""
    if "options" not in request.DESCRIPTOR.fields_by_name or not request.HasField("options"):
        return None
    return request.options


def _options_json(options) -> dict | None:
    """The options as sent, for the fingerprint: None when there are none or all are defaults."""
    if options is None:
        return None
    return json_format.MessageToDict(options, preserving_proto_field_name=True) or None


class RunSubmitter:
    def __init__(self, *, store: RunStore, nc, registry, router: VersionRouter,
                 webhook_policy: OutboundPolicy | None) -> None:
        self._store = store
        self._nc = nc
        self._registry = registry
        self._router = router
        self._canceller = Canceller(store, nc)
        self._lifecycle = RunLifecycle(store, nc.jetstream())
        # None: this deployment has no webhook secret, so it sends no webhooks.
        self._webhook_policy = webhook_policy

    def webhook(self, url: str, on_waiting: bool = False) -> dict[str, Any]:
        """A run's (or a schedule's) webhook as stored, once the outbound policy allows its URL."""
        if self._webhook_policy is None:
            raise FailedPrecondition("webhooks are not configured on this deployment: set GRAPHMESH_WEBHOOK_SECRET "
                                     "(the key deliveries are signed with)", code="WEBHOOKS_NOT_CONFIGURED")
        return {"url": self._webhook_policy.check_url(url).url, "on_waiting": on_waiting}

    async def new_run(self, request, *, sync: bool, schedule_id: str | None = None,
                      scheduled_for: datetime | None = None, webhook: dict[str, Any] | None = None) -> NewRun:
        """The run a CreateRunRequest (or InvokeRunRequest) asks for, checked; not yet recorded.
        `webhook` overrides the request's (a schedule's webhook, already checked)."""
        graph = self._registry.get(request.graph).name  # NotFound for an unknown graph
        me = caller()
        me.require("submitter", "operator", graph=graph, action=f"start runs of graph '{graph}'")
        if request.thread_id and not (me.has("operator") and me.covers(graph)):
            # Continuing a thread reads (and with interrupt/rollback, cancels) its owner's work.
            owner = await self._store.thread_owner(request.thread_id)
            if owner and owner != me.name:
                raise PermissionDenied(f"{me.name} may not run on thread {request.thread_id}: it belongs to "
                                       "another owner", code="NOT_YOUR_THREAD")
        # No input: the run continues its thread (LangGraph's astream(None)), or runs a command.
        raw_input = json_format.MessageToDict(request.input) if request.HasField("input") else None
        asked_options = _options_of(request)
        # What makes a retry "the same request" for its idempotency key (as the caller sent it).
        fingerprint = request_fingerprint(
            graph=graph, graph_version=getattr(request, "graph_version", ""), thread_id=request.thread_id,
            graph_input=raw_input,
            options=_options_json(asked_options))
        thread_id = request.thread_id or str(uuid.uuid4())
        version = await self._router.choose(graph, thread_id, pinned=getattr(request, "graph_version", ""),
                                            new_thread=not request.thread_id)
        spec = self._registry.get(graph, version)
        # A retried CreateRun (same idempotency key) gets its run back, whatever the load now.
        if not (request.idempotency_key and await self._store.run_by_idempotency_key(me.name, request.idempotency_key)):
            await admit(self._store, spec, me.name)
        if request.multitask_strategy not in STRATEGY_NAMES:
            raise InvalidArgument(f"unknown multitask_strategy {request.multitask_strategy}")
        options = parse_options(asked_options, nodes=lambda: self._registry.node_names(spec.name, spec.version),
                                max_steps=spec.limits.max_steps, max_bytes=spec.limits.max_input_bytes)
        if raw_input is None:
            await self._check_continuation(request.thread_id, options)
            graph_input = None
        else:
            graph_input = self._registry.validate_input(spec, raw_input)
        if options.checkpoint_id:
            await self._check_checkpoint(request.thread_id, options.checkpoint_id)
        metadata = check_metadata(request.metadata)
        if webhook is None and getattr(request, "webhook", None) is not None and request.webhook.url:
            webhook = self.webhook(request.webhook.url, request.webhook.on_waiting)
        return NewRun(
            graph=spec.name,
            versions=spec.versions(),
            thread_id=thread_id,
            input=graph_input,
            idempotency_key=request.idempotency_key,
            metadata=metadata,
            multitask_strategy=STRATEGY_NAMES[request.multitask_strategy],
            sync=sync,
            # Idempotency keys are scoped to their owner.
            owner=me.name,
            owner_roles=sorted(me.roles),
            trace_context=traceparent(),  # this request's span: the root of the run's trace
            fingerprint=fingerprint,
            schedule_id=schedule_id,
            scheduled_for=scheduled_for,
            webhook=webhook,
            options=options.to_json(),
            after_seconds=options.after_seconds,
        )

    async def _check_continuation(self, thread_id: str, options: RunOptions) -> None:
        """A run without input continues a thread: it needs one with state (or a run queued
        to write it), a checkpoint to branch from, or a command."""
        if options.has_command or options.checkpoint_id:
            return
        if not thread_id or not await self._store.thread_can_continue(thread_id):
            where = f"thread '{thread_id}' has no state" if thread_id else "a new thread has no state"
            raise InvalidArgument(f"input is required: {where} for a run without input to continue",
                                  code="INPUT_REQUIRED")

    async def _check_checkpoint(self, thread_id: str, checkpoint_id: str) -> None:
        if not thread_id:
            raise InvalidArgument("checkpoint_id needs the thread_id whose checkpoint it is", code="THREAD_REQUIRED")
        if not await self._store.thread_has_checkpoint(thread_id, checkpoint_id):
            raise NotFound(f"thread '{thread_id}' has no checkpoint '{checkpoint_id}'", code="CHECKPOINT_NOT_FOUND")

    async def create(self, request, **scheduled) -> tuple[RunRecord, bool]:
        """Records and dispatches the run a CreateRunRequest asks for: (run, created). A
        retried idempotent request returns the run it created first (created False).
        `scheduled`: new_run's schedule_id, scheduled_for and webhook."""
        new = await self.new_run(request, sync=False, **scheduled)
        require_connected(self._nc)
        result = await self._store.create_run(new)
        run = result.run
        if result.created:
            RUNS_CREATED.add(1, {"graph": run.graph, "graph_version": run.versions["graph_version"], "sync": False})
        if result.created and not result.dispatch and new.multitask_strategy in ("interrupt", "rollback"):
            run = await self._canceller.interrupt_active(run, new.multitask_strategy, actor=new.owner)
        try:
            if result.created:
                await self._lifecycle.announce_created(run, dispatch=result.dispatch)
        except Exception as exc:
            # The run is committed, so it is accepted: the reconciler dispatches it later.
            log.warning("run %s committed but not yet published: %s", run.run_id, exc)
        return run, result.created
