"""The run error codes: one table (graphmesh/run_errors.py), its documentation
(docs/errors.md, written by scripts/errors_doc.py) and the codes the source produces agree;
each ExecutionError names the code the executor ends a run with for it."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from graphmesh.client import ConfigError
from graphmesh.errors import ExecutionError, FailedPrecondition, GraphmeshError
from graphmesh.execution.errors import IncompatibleCheckpoint, NodeFailed, NodePaused
from graphmesh.execution.migration import MigrationFailed
from graphmesh.execution.policies import PolicyViolation
from graphmesh.execution.saver import SecretInState, StateTooLarge
from graphmesh.guard import NodeDisabled
from graphmesh.manifest import ManifestError
from graphmesh.run_errors import RUN_ERRORS, is_retryable
from graphmesh.secrets import SecretError, SecretNotDeclared, SecretNotFound
from graphmesh.store import LeaseLost

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("errors_doc", ROOT / "scripts" / "errors_doc.py")
errors_doc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(errors_doc)

EXECUTION_ERRORS = [NodePaused, IncompatibleCheckpoint, NodeFailed, MigrationFailed, PolicyViolation, StateTooLarge,
                    NodeDisabled, SecretError, SecretNotDeclared, SecretNotFound]


def test_every_run_error_code_the_source_produces_is_in_the_table():
    produced = errors_doc.produced_run_error_codes()
    missing = {code: where for code, where in produced.items() if code not in RUN_ERRORS}
    assert not missing, f"add these to graphmesh/run_errors.py RUN_ERRORS: {missing}"


def test_the_table_lists_no_code_the_source_never_produces():
    unused = set(RUN_ERRORS) - set(errors_doc.produced_run_error_codes())
    assert not unused, f"no RunError(...) produces {sorted(unused)}: drop them from RUN_ERRORS"


def test_docs_errors_md_lists_the_table_as_it_is():
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| .*? \| (yes|no) \| .* \|$", text, re.M))
    assert rows == {code: "yes" if e.retryable else "no" for code, e in RUN_ERRORS.items()}


def test_docs_errors_md_is_what_the_code_generates():
    # Also covers the call errors: every code= a GraphmeshError raised in the source carries.
    assert (ROOT / "docs" / "errors.md").read_text(encoding="utf-8") == errors_doc.render(), \
        "docs/errors.md is out of date: run .venv/bin/python scripts/errors_doc.py"


def test_the_call_error_scan_sees_the_codes_services_raise():
    codes = errors_doc.grpc_error_codes()
    assert "THREAD_BUSY" in codes["FAILED_PRECONDITION"]  # raised by the store
    assert "NOT_YOUR_THREAD" in codes["PERMISSION_DENIED"]  # raised by services/api
    # services/api/runs.py: status_error = Unavailable if ... else FailedPrecondition
    assert "MULTITASK_CANCEL_FAILED" in codes["UNAVAILABLE"]
    assert "MULTITASK_CANCEL_FAILED" in codes["FAILED_PRECONDITION"]
    assert "RUN_CHANGED" in codes["FAILED_PRECONDITION"]  # LeaseLost's default


@pytest.mark.parametrize("cls", EXECUTION_ERRORS, ids=lambda c: c.__name__)
def test_each_execution_error_carries_a_table_code_and_its_retryability(cls):
    assert issubclass(cls, ExecutionError) and issubclass(cls, GraphmeshError)
    assert cls.run_error_code in RUN_ERRORS
    assert cls.retryable is is_retryable(cls.run_error_code)
    assert cls.default_code == cls.run_error_code


def test_the_executor_ends_runs_with_each_errors_own_code():
    """Every `except SomeExecutionError: ... RunError("CODE", ...)` in the executor uses the
    class's run_error_code."""
    classes = {c.__name__: c for c in EXECUTION_ERRORS}
    tree = ast.parse((ROOT / "graphmesh" / "execution" / "executor.py").read_text(encoding="utf-8"))
    checked = {}
    for handler in (n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)):
        names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
        caught = [n.id for n in names if isinstance(n, ast.Name) and n.id in classes]
        codes = {c.args[0].value for c in ast.walk(handler) if isinstance(c, ast.Call)
                 and getattr(c.func, "id", "") == "RunError" and c.args and isinstance(c.args[0], ast.Constant)}
        for name in caught:
            for code in codes:
                checked[name] = code
                assert classes[name].run_error_code == code, f"the executor records {name} as {code}"
    # Not vacuous: the executor maps these today.
    assert {"NodePaused", "NodeFailed", "IncompatibleCheckpoint", "PolicyViolation", "StateTooLarge"} <= set(checked)


def test_builtin_bases_stay_for_callers_and_retry_policies():
    # LangGraph's default retry policy skips ValueError, LookupError and RuntimeError.
    assert issubclass(NodeDisabled, RuntimeError) and issubclass(PolicyViolation, RuntimeError)
    assert issubclass(StateTooLarge, RuntimeError) and issubclass(SecretNotFound, LookupError)
    assert issubclass(ManifestError, ValueError) and issubclass(SecretInState, ValueError)
    # Raised by a checkpoint write outside any node: it fails the run, it is no outage.
    assert issubclass(SecretInState, ExecutionError) and SecretInState.run_error_code == "GRAPH_ERROR"
    assert issubclass(ConfigError, GraphmeshError) and issubclass(LeaseLost, FailedPrecondition)


def test_constructors_and_attributes_are_kept():
    paused = NodePaused("n", "off for maintenance")
    assert (paused.node, paused.reason, str(paused), paused.code) == ("n", "off for maintenance",
                                                                      "off for maintenance", "NODE_DISABLED")
    failed = NodeFailed("n", "ValueError: boom")
    assert (failed.node, str(failed), failed.message) == ("n", "ValueError: boom", "ValueError: boom")
    big = StateTooLarge(5000, 4096, 3)
    assert (big.size, big.limit, big.step, big.code) == (5000, 4096, 3, "STATE_TOO_LARGE")
    violation = PolicyViolation("g", "n", "requires_approval", "needs approval")
    assert (violation.graph, violation.node, violation.policy, str(violation)) == ("g", "n", "requires_approval",
                                                                                   "needs approval")
    disabled = NodeDisabled("g", "n", "why")
    assert (disabled.node, disabled.reason, disabled.code) == ("n", "why", "NODE_DISABLED")
    assert str(disabled) == "node 'n' of graph 'g' is disabled: why"


def test_an_execution_error_must_name_a_code_of_the_table():
    with pytest.raises(TypeError, match="NO_SUCH_CODE"):
        type("Bad", (ExecutionError,), {"run_error_code": "NO_SUCH_CODE"})
