"""Node guards: a check that runs just before each node of a graph, so an operator can
switch a node off (GraphService.DisableNode) and runs stop before it, whatever the
graph's code does; the node then runs in its own trace span. The process that executes
graphs installs the check (a worker, from its live view of disabled nodes); until then
every node runs.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

from langchain_core.runnables import RunnableConfig, RunnableLambda

from graphmesh.telemetry.tracing import node_span

# (graph, node) -> the reason the node is disabled, or None.
Check = Callable[[str, str], "str | None"]
_check: Check = lambda graph, node: None  # noqa: E731


class NodeDisabled(RuntimeError):
    """Raised in place of a disabled node. A RuntimeError, so retry policies skip it."""

    def __init__(self, graph: str, node: str, reason: str) -> None:
        super().__init__(f"node '{node}' of graph '{graph}' is disabled: {reason}")
        self.node = node
        self.reason = reason


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
        with node_span(graph, node, config):
            return inner.invoke(state, config)

    async def arun(state: Any, config: RunnableConfig) -> Any:
        _guard(graph, node)
        with node_span(graph, node, config):
            return await inner.ainvoke(state, config)

    return RunnableLambda(run, afunc=arun, name=node)
