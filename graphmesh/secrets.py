"""Secrets for graph nodes: `get_secret("NAME")`, for names the graph's manifest declares.

    from graphmesh.secrets import get_secret

    def call_api(state):
        key = get_secret("API_KEY")   # declared: `secrets: [API_KEY]` in graphmesh.yaml
        ...

Values come from a provider chain, first hit wins:

1. the environment variable `GRAPHMESH_SECRET_<NAME>` of the process executing the run;
2. the file `<NAME>` in the directory `GRAPHMESH_SECRETS_DIR` (a mounted secret directory,
   e.g. a Kubernetes Secret volume); one trailing newline is dropped. Read at every call,
   so a rotated file is picked up.

A value is never meant to enter state, checkpoints, events, traces, logs or error
messages. As a safety net every value this process has seen (the declared secrets of each
graph it executed, and whatever get_secret returned) is *redacted* (replaced by `***`)
wherever graphmesh writes on a graph's behalf: run error messages, progress and node
events, approval payloads, checkpoint values and writes, and every log line and write to
stdout/stderr of the process (installed on first use). Values shorter than
MIN_REDACT_LENGTH characters are not redacted (they would blank out ordinary text).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import os
import re
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from graphmesh.errors import ExecutionError

__all__ = ["get_secret", "SecretError", "SecretNotDeclared", "SecretNotFound", "secret_scope", "redact",
           "redact_value", "contains_secret", "remember", "install_redaction", "REDACTED", "ENV_PREFIX",
           "DIR_ENV"]

ENV_PREFIX = "GRAPHMESH_SECRET_"
DIR_ENV = "GRAPHMESH_SECRETS_DIR"
REDACTED = "***"
MIN_REDACT_LENGTH = 4

log = logging.getLogger(__name__)


class SecretError(ExecutionError, LookupError):
    """A secret a node asked for cannot be given (a LookupError: retry policies skip it).
    Raised in a node, it fails the run as NODE_FAILED."""

    run_error_code = "NODE_FAILED"


class SecretNotDeclared(SecretError):
    pass


class SecretNotFound(SecretError):
    pass


# -- providers ----------------------------------------------------------------------------

Provider = Callable[[str], "str | None"]


def from_environment(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name)


def from_directory(name: str) -> str | None:
    directory = os.environ.get(DIR_ENV)
    if not directory:
        return None
    path = Path(directory) / name
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


PROVIDERS: list[Provider] = [from_environment, from_directory]


def _lookup(name: str) -> str | None:
    for provider in PROVIDERS:
        value = provider(name)
        if value is not None:
            return value
    return None


# -- the current run's declared secrets ------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    graph: str
    names: frozenset[str]


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("graphmesh_secret_scope", default=None)


@contextmanager
def secret_scope(graph: str, names: Iterable[str]) -> Iterator[None]:
    """Code inside (a graph's nodes, in tasks and threads started inside) may read the
    secrets `names` of `graph`. Their current values are remembered for redaction."""
    names = frozenset(names)
    for name in names:
        value = _lookup(name)
        if value is not None:
            remember(value)
    token = _scope.set(_Scope(graph, names))
    try:
        yield
    finally:
        _scope.reset(token)


def get_secret(name: str) -> str:
    """The value of a secret the running graph declares in its manifest (`secrets:`)."""
    scope = _scope.get()
    if scope is None:
        raise SecretError(f"get_secret({name!r}) was called outside a graphmesh run: secrets are given to the "
                          "nodes of a graph that declares them in its manifest (secrets: [...])")
    if name not in scope.names:
        declared = ", ".join(sorted(scope.names)) or "none"
        raise SecretNotDeclared(f"secret {name!r} is not declared by graph '{scope.graph}' (declared: {declared}); "
                                f"add it to the graph's `secrets` in the manifest")
    value = _lookup(name)
    if value is None:
        raise SecretNotFound(f"secret {name!r} of graph '{scope.graph}' is not set: set {ENV_PREFIX}{name} in the "
                             f"environment of the workers, or put a file named {name} in {DIR_ENV}")
    remember(value)
    return value


# -- redaction ------------------------------------------------------------------------------

_lock = threading.Lock()
_known: set[str] = set()
_needles: tuple[bytes, ...] = ()  # utf-8 forms, for serialized data
_pattern: re.Pattern | None = None


def remember(value: str) -> None:
    """Adds a value to those redacted in this process."""
    global _needles, _pattern
    if len(value) < MIN_REDACT_LENGTH or value in _known:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        forms = set()
        for v in _known:
            forms.add(v)
            forms.add(json.dumps(v)[1:-1])  # as it appears inside JSON text (log lines, jsonb)
            forms.add(json.dumps(v, ensure_ascii=False)[1:-1])
            forms.add(repr(v)[1:-1])  # as it appears in a repr (exception reprs, tracebacks)
        ordered = sorted(forms, key=len, reverse=True)  # longest first: no partial leftovers
        _pattern = re.compile("|".join(re.escape(f) for f in ordered))
        _needles = tuple({v.encode("utf-8") for v in _known})
    install_redaction(streams=False)


def known() -> bool:
    return _pattern is not None


_span_of: tuple[re.Pattern | None, int] = (None, 0)


def redaction_span() -> tuple[re.Pattern | None, int]:
    """The current redaction pattern and the length of the longest text it matches (None, 0
    while no secret is known): a stream redacted piece by piece holds back that length
    minus one, so that a secret split across pieces is still matched whole."""
    global _span_of
    pattern = _pattern
    if pattern is None:
        return None, 0
    cached = _span_of
    if cached[0] is pattern:
        return cached
    with _lock:
        pattern = _pattern
        longest = max(len(form) for v in _known
                      for form in (v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1], repr(v)[1:-1]))
        _span_of = (pattern, longest)
    return _span_of


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None or not isinstance(text, str):
        return text
    return pattern.sub(REDACTED, text)


def contains_secret(data: bytes | str) -> bool:
    if not _needles:
        return False
    if isinstance(data, str):
        return redact(data) != data
    return any(n in data for n in _needles)


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, sets, strings; exceptions become
    their redacted repr) with every known secret replaced; other objects as they are."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(redact_value(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(repr(value))  # what a checkpoint stores for an exception anyway
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # e.g. LangGraph's Interrupt: its payload is written to the checkpoint and shown to
        # reviewers, so a secret in it is redacted there rather than failing the run.
        changes = {f.name: redact_value(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        try:
            return dataclasses.replace(value, **changes)
        except (TypeError, ValueError):
            return value
    if isinstance(value, (bytes, bytearray)):
        out = bytes(value)
        for needle in _needles:
            out = out.replace(needle, REDACTED.encode())
        return out
    return value


# -- process-wide redaction of logs and standard streams -------------------------------------


class _RedactingFormatter(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class _RedactingStream:
    """A text stream wrapper (sys.stdout/sys.stderr) that redacts what is written."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_installed_streams = False


def install_redaction(*, streams: bool = False) -> None:
    """Redacts known secrets from every line the root logger's handlers write and (with
    `streams`, for service processes) from sys.stdout/sys.stderr. Idempotent; runs again
    whenever a secret is remembered, so handlers installed later are covered too."""
    global _installed_streams
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _RedactingFormatter):
            handler.setFormatter(_RedactingFormatter(handler.formatter or logging.Formatter()))
    if streams and not _installed_streams:
        _installed_streams = True
        if not isinstance(sys.stdout, _RedactingStream):
            sys.stdout = _RedactingStream(sys.stdout)
        if not isinstance(sys.stderr, _RedactingStream):
            sys.stderr = _RedactingStream(sys.stderr)


def _reset_for_tests() -> None:
    global _needles, _pattern
    with _lock:
        _known.clear()
        _needles, _pattern = (), None
