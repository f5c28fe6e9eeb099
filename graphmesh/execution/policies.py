"""Node policies the worker enforces before a node runs, whatever the graph's code does.

- `mutates: true` with `requires_approval: true`: the node runs only if its run holds an
  approval decided APPROVED or EDITED that names it, as the interrupting node (`node`) or
  in the interrupt's payload (`"node": "<name>"`, an approval step guarding the node).
  Approvals are requested by interrupts and decided before the run resumes, so the
  approval a node needs is always recorded before the execution that reaches the node:
  the gate reads the run's approved nodes once per execution, on first need.
- `owner_role: X`: the node runs only if the run's owner held X (or admin) when it
  created the run (RunRecord.owner_roles).

A node that fails its policy raises PolicyViolation in place of its body (a RuntimeError:
retry policies skip it); the executor fails the run with POLICY_VIOLATION and appends a
`policy_violation` audit record in the same transaction.

The gate also stops a node from starting once its run's state went over
`max_state_bytes`; before a mutating node it first waits for the checkpoint writes under
way, so a node with outside effects never runs after a refused checkpoint.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphmesh.errors import ExecutionError
from graphmesh.store import RunRecord
from graphmesh.store.approvals import approved_nodes
from graphmesh.store.audit import record_audit

ACTOR = "system:worker"


class PolicyViolation(ExecutionError, RuntimeError):
    """Raised in place of a node its policy does not allow to run."""

    run_error_code = "POLICY_VIOLATION"

    def __init__(self, graph: str, node: str, policy: str, message: str) -> None:
        super().__init__(message)
        self.graph, self.node, self.policy = graph, node, policy


def holds_role(run: RunRecord, role: str) -> bool:
    roles = set(run.owner_roles or ())
    return role in roles or "admin" in roles


class PolicyGate:
    """One execution's node policies (installed through graphmesh.guard.gate_nodes)."""

    def __init__(self, store: Any, run: RunRecord, spec: Any, saver: Any = None) -> None:
        self._store = store
        self._run = run
        self._spec = spec
        self._saver = saver
        self._approved: frozenset[str] | None = None
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self.queries = 0  # approval look-ups made (at most one per execution)

    async def check(self, graph: str, node: str, config: Any = None) -> None:
        if graph != self._spec.name:
            return  # another graph's node (a subgraph compiled elsewhere): not ours to judge
        policy = self._spec.nodes.get(node)
        saver = self._saver
        if saver is not None:
            if policy is not None and policy.mutates:
                meta = (config or {}).get("metadata") or {}
                root = "|" not in str(meta.get("langgraph_checkpoint_ns", ""))
                step = meta.get("langgraph_step")
                # Raises StateTooLarge if the checkpoint this node follows was refused.
                await saver.settled(step if root and isinstance(step, int) else None)
            elif saver.too_large is not None:
                raise saver.too_large
        if policy is None:
            return
        run = self._run
        if policy.owner_role and not holds_role(run, policy.owner_role):
            held = ", ".join(sorted(run.owner_roles)) or "no roles"
            raise PolicyViolation(graph, node, "owner_role", (
                f"node '{node}' of graph '{graph}' may only run for an owner holding the role "
                f"'{policy.owner_role}' (policy owner_role); owner '{run.owner or 'anonymous'}' of run "
                f"{run.run_id} holds {held}"))
        if policy.mutates and policy.requires_approval and node not in await self._approved_nodes():
            raise PolicyViolation(graph, node, "requires_approval", (
                f"node '{node}' of graph '{graph}' mutates and requires an approval before it runs (policy "
                f"requires_approval); run {run.run_id} has no approved or edited approval naming '{node}'"))

    def check_sync(self, graph: str, node: str, config: Any = None) -> None:
        """For nodes run by a synchronous stream (graph.invoke/stream) while this gate is
        set: the check runs on the execution's event loop, from the node's thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None or not self._loop.is_running():
            raise RuntimeError("node policies cannot be checked here: stream the graph with astream on the "
                               "execution's event loop")
        asyncio.run_coroutine_threadsafe(self.check(graph, node, config), self._loop).result()

    async def _approved_nodes(self) -> frozenset[str]:
        async with self._lock:
            if self._approved is None:
                async with self._store.connection() as conn:
                    approved = await approved_nodes(conn, self._run.run_id)
                self.queries += 1
                self._approved = approved
        return self._approved


def audit_details(violation: PolicyViolation, run: RunRecord) -> dict[str, Any]:
    return {"node": violation.node, "policy": violation.policy, "graph": violation.graph,
            "graph_version": run.versions.get("graph_version", "")}


async def record_violation(conn: Any, run: RunRecord, details: dict[str, Any]) -> None:
    """The audit record of a refused node, in the caller's transaction."""
    await record_audit(conn, ACTOR, "policy_violation", run_id=run.run_id, details=details)
