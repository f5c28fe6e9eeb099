"""Writes docs/errors.md from the code: the run error table (graphmesh/run_errors.py) and
the `code` of every GraphmeshError that graphmesh/ and services/ raise, by gRPC status.

    .venv/bin/python scripts/errors_doc.py          # rewrite docs/errors.md
    .venv/bin/python scripts/errors_doc.py --check  # exit 1 if it is out of date

The source is read, not imported: a call `SomeError("...", code="X")` counts where SomeError
is graphmesh.errors' status class or a class derived from one (found by its `class`
statement), or a name assigned one of them (`status_error = Unavailable if ... else
FailedPrecondition`). tests/unit/test_run_errors.py runs the check."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("graphmesh", "services")
DOC = ROOT / "docs" / "errors.md"

# graphmesh/errors.py's status classes -> the gRPC status name they are sent as.
STATUS_CLASSES = {
    "InvalidArgument": "INVALID_ARGUMENT",
    "NotFound": "NOT_FOUND",
    "AlreadyExists": "ALREADY_EXISTS",
    "FailedPrecondition": "FAILED_PRECONDITION",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "DeadlineExceeded": "DEADLINE_EXCEEDED",
    "Unavailable": "UNAVAILABLE",
    "PermissionDenied": "PERMISSION_DENIED",
    "Unauthenticated": "UNAUTHENTICATED",
    "Unimplemented": "UNIMPLEMENTED",
}


def _files() -> list[Path]:
    return sorted(p for d in SOURCES for p in (ROOT / d).rglob("*.py") if "_pb2" not in p.name)


def _trees() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in _files()]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _str_arg(call: ast.Call, keyword: str, position: int | None) -> str | None:
    for kw in call.keywords:
        if kw.arg == keyword and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if position is not None and len(call.args) > position:
        arg = call.args[position]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def produced_run_error_codes() -> dict[str, list[str]]:
    """code -> where: every `RunError("CODE", ...)` (or `RunError(code="CODE")`) in the source."""
    found: dict[str, list[str]] = defaultdict(list)
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) == "RunError" and \
                    (code := _str_arg(node, "code", 0)) is not None:
                found[code].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return dict(found)


def _class_statuses(trees) -> tuple[dict[str, str], dict[str, str]]:
    """(class name -> gRPC status, class name -> its default_code) for every class that
    derives from a status class, as written in the source."""
    bases: dict[str, list[str]] = {}
    defaults: dict[str, str] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [_name(b) for b in node.bases]
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(_name(t) == "default_code" for t in stmt.targets) \
                            and isinstance(stmt.value, ast.Constant):
                        defaults[node.name] = stmt.value.value
    status: dict[str, str] = dict(STATUS_CLASSES)

    def resolve(name: str, seen: frozenset = frozenset()) -> str | None:
        if name in status:
            return status[name]
        if name in seen or name not in bases:
            return None
        for base in bases[name]:
            if (found := resolve(base, seen | {name})) is not None:
                return found
        return None

    for name in bases:
        if (found := resolve(name)) is not None:
            status[name] = found
    return status, {n: c for n, c in defaults.items() if n in status}


def grpc_error_codes() -> dict[str, dict[str, list[str]]]:
    """gRPC status -> code -> where: every code a GraphmeshError raised in the source carries."""
    trees = _trees()
    status, defaults = _class_statuses(trees)
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, code in defaults.items():
        found[status[name]][code].append(f"default of {name}")
    for path, tree in trees:
        aliases: dict[str, set[str]] = defaultdict(set)  # a name bound to status classes
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                names = {_name(n) for n in ast.walk(node.value) if isinstance(n, ast.Name)}
                aliases[node.targets[0].id] |= {n for n in names if n in status}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or (code := _str_arg(node, "code", None)) is None:
                continue
            callee = _name(node.func)
            classes = {callee} if callee in status else aliases.get(callee, set())
            for cls in classes:
                found[status[cls]][code].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return {s: dict(codes) for s, codes in found.items()}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from graphmesh.run_errors import RUN_ERRORS

    lines = [
        "# Errors",
        "",
        "<!-- Written by scripts/errors_doc.py from graphmesh/run_errors.py and the source; do not edit by",
        "hand: change the code and run `.venv/bin/python scripts/errors_doc.py`. -->",
        "",
        "graphmesh reports two kinds of error: a **run error**, recorded on a run that ended FAILED,",
        "CANCELLED or PAUSED (`error.code` in GetRun, StreamRun's final event and `graphmesh runs get`),",
        "and a **call error**, the gRPC status of a call that was refused, with a graphmesh code in the",
        "trailing metadata key `gm-error-code` (and the run concerned, if any, in `gm-run-id`).",
        "",
        "## Run errors",
        "",
        "*Retryable*: whether `graphmesh runs retry` of the same run, with nothing changed, may",
        "succeed. In code: `graphmesh.run_errors.RUN_ERRORS`; each `graphmesh.errors.ExecutionError`",
        "names the code it ends a run with (`run_error_code`) and `retryable`.",
        "",
        "| Code | Meaning | Retryable | What an operator does |",
        "|---|---|---|---|",
    ]
    for e in RUN_ERRORS.values():
        lines.append(f"| `{e.code}` | {_cell(e.meaning)} | {'yes' if e.retryable else 'no'} | {_cell(e.action)} |")
    lines += [
        "",
        "## Call errors (gRPC status and code)",
        "",
        "Services raise `graphmesh.errors` status classes; one server interceptor",
        "(`graphmesh/rpc/errors.py`) sends each as its gRPC status, its message as the status details",
        "and its `code` as `gm-error-code`. A client turns a failed call back into the class with",
        "`graphmesh.rpc.errors.from_rpc_error(err)` (`.code`, `.run_id`, `.message`); the CLI prints",
        "`error: STATUS (code): message`. Any other exception is sent as INTERNAL, \"internal error",
        "(ref …)\", with no code: the service log has its traceback under that ref. A stream the server",
        "ends because it shuts down gets UNAVAILABLE with no code: reconnect from the last sequence.",
        "",
        "| gRPC status | Codes |",
        "|---|---|",
    ]
    for status_name, codes in sorted(grpc_error_codes().items()):
        lines.append(f"| {status_name} | {', '.join(f'`{c}`' for c in sorted(codes))} |")
    lines += [
        "",
        "A status class raised without a code sends its default: the status name itself",
        "(`NOT_FOUND`, …). `LeaseLost` (a FAILED_PRECONDITION) defaults to `RUN_CHANGED`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/errors_doc.py",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
