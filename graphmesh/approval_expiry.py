"""Expires approvals past their node policy's time limit: each is recorded as EXPIRED and,
like any decision, resumes its run, with its shape's rejection (graphmesh/resume.py: False,
an "ignore" HumanResponse, a HITL reject whose message says it expired, or the record with
expired: true). An expiry is never refused, whatever the interrupt allows."""

from __future__ import annotations

import logging

from graphmesh.errors import GraphmeshError
from graphmesh.lifecycle import RunLifecycle
from graphmesh.loops import run_periodically
from graphmesh.store import ApprovalStore

log = logging.getLogger(__name__)

EXPIRY_ACTOR = "system:expiry"


async def expire_forever(lifecycle: RunLifecycle, approvals: ApprovalStore, *, every_seconds: float = 1.0) -> None:
    async def expire_due() -> None:
        for approval_id in await approvals.expired():
            await expire(lifecycle, approval_id)

    # A failed pass (Postgres away, or a bug) is logged, counted and retried with backoff.
    await run_periodically("approval expiry", expire_due, every_seconds, logger=log)


async def expire(lifecycle: RunLifecycle, approval_id: str) -> None:
    try:
        result = await lifecycle.decide(approval_id, kind="expire", edited_value=None,
                                        comment="approval expired before a decision", reviewer=EXPIRY_ACTOR)
    except GraphmeshError as exc:  # decided or cancelled meanwhile
        log.info("approval %s not expired: %s", approval_id, exc.message)
        return
    if not result.replayed:
        log.info("approval %s expired", approval_id)
        await lifecycle.announce_decision(result, "expire")
