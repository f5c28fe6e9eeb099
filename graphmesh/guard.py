"""Node guards: a check that runs just before each node of a graph, so an operator can
switch a node off (GraphService.DisableNode) and runs stop before it, whatever the
graph's code does; the node then runs in its own trace span. The process that executes
graphs installs the check (a worker, from its live view of disabled nodes); until then
every node runs.

An execution may also set a *gate* for the nodes it runs (`gate_nodes`): an object with
`async check(graph, node, config)` and `check_sync(graph, node, config)` that raise to stop a node before
its body runs. The executor's gate enforces the manifest's node policies
(graphmesh/execution/policies.py). It lives in a context variable, so the node tasks and
threads LangGraph starts inside the execution see it, and other executions do not.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol

from langchain_core.runnables import RunnableConfig, RunnableLambda

from graphmesh.errors import ExecutionError
from graphmesh.telemetry.tracing import node_span

# (graph, node) -> the reason the node is disabled, or None.
Check = Callable[[str, str], "str | None"]
_check: Check = lambda graph, node: None  # noqa: E731


class NodeDisabled(ExecutionError, RuntimeError):
    """Raised in place of a disabled node. A RuntimeError, so retry policies skip it."""

    run_error_code = "NODE_DISABLED"

    def __init__(self, graph: str, node: str, reason: str) -> None:
        super().__init__(f"node '{node}' of graph '{graph}' is disabled: {reason}")
        self.node = node
        self.reason = reason


class NodeGate(Protocol):
    async def check(self, graph: str, node: str, config: RunnableConfig) -> None: ...

    def check_sync(self, graph: str, node: str, config: RunnableConfig) -> None: ...


_gate: contextvars.ContextVar[NodeGate | None] = contextvars.ContextVar("graphmesh_node_gate", default=None)


@contextmanager
def gate_nodes(gate: NodeGate | None) -> Iterator[None]:
    """Nodes run inside (in this context and tasks or threads it starts) first pass `gate`."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


def install_check(check: Check) -> None:
    global _check
    _check = check


def _guard(graph: str, node: str) -> None:
    reason = _check(graph, node)
    if reason is not None:
        raise NodeDisabled(graph, node, reason)


def guarded(builder: Any, graph: str) -> Any:
    """A copy of a StateGraph builder whose every node first passes the guard."""
    clone = copy.copy(builder)  # the module's builder stays untouched for other versions
    clone.nodes = {name: dataclasses.replace(spec, runnable=_wrap(graph, name, spec.runnable))
                   for name, spec in builder.nodes.items()}
    return clone


def _wrap(graph: str, node: str, inner: Any) -> RunnableLambda:
    # The one place every node passes: the guard, then the node inside its own span.
    def run(state: Any, config: RunnableConfig) -> Any:
        _guard(graph, node)
        if (gate := _gate.get()) is not None:
            gate.check_sync(graph, node, config)
        with node_span(graph, node, config):
            return inner.invoke(state, config)

    async def arun(state: Any, config: RunnableConfig) -> Any:
        _guard(graph, node)
        if (gate := _gate.get()) is not None:
            await gate.check(graph, node, config)
        with node_span(graph, node, config):
            return await inner.ainvoke(state, config)

    return RunnableLambda(run, afunc=arun, name=node)
