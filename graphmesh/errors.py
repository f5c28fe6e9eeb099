"""The one error tree of graphmesh, translated to gRPC status codes at the edges.

    GraphmeshError
    ├── InvalidArgument        INVALID_ARGUMENT     bad input (not an object, schema, unknown enum)
    ├── NotFound               NOT_FOUND            unknown graph, run, thread
    ├── AlreadyExists          ALREADY_EXISTS
    ├── FailedPrecondition     FAILED_PRECONDITION  busy thread, not sync-eligible, wrong status
    ├── ResourceExhausted      RESOURCE_EXHAUSTED   a named limit was hit
    ├── DeadlineExceeded       DEADLINE_EXCEEDED    a synchronous run outlasted its deadline
    ├── Unavailable            UNAVAILABLE          Postgres or NATS unreachable; retry later
    ├── PermissionDenied       PERMISSION_DENIED
    ├── Unauthenticated        UNAUTHENTICATED
    ├── Unimplemented          UNIMPLEMENTED        a valid request this release does not serve
    ├── ExecutionError                              ends a run: `run_error_code`, `retryable`
    │   ├── NodeFailed, NodePaused, IncompatibleCheckpoint   graphmesh.execution.errors
    │   ├── MigrationFailed                                  graphmesh.execution.migration
    │   ├── PolicyViolation                                  graphmesh.execution.policies
    │   ├── StateTooLarge                                    graphmesh.execution.saver
    │   ├── NodeDisabled                                     graphmesh.guard
    │   └── SecretError > SecretNotDeclared, SecretNotFound  graphmesh.secrets
    ├── ManifestError                                        graphmesh.manifest
    └── ConfigError                                          graphmesh.client (CLI config)

LeaseLost (graphmesh.store) is a FailedPrecondition. Services raise the status classes;
one server interceptor (graphmesh.rpc.errors) turns them into status codes with readable
messages and the `code` in trailing metadata, and anything else into INTERNAL without
leaking its stack trace to the client; graphmesh.rpc.errors.from_rpc_error turns a failed
call back into the status class. An ExecutionError ends a run with the RunError code
`run_error_code` (graphmesh/run_errors.py, docs/errors.md); those raised inside a node reach
the run as NODE_FAILED. Classes that callers catch as a builtin (ValueError, LookupError,
RuntimeError: also what LangGraph's default retry policy skips) keep it as a second base.

An ExecutionError that escapes a graph's stream fails the run with its run_error_code; any
other GraphmeshError there is an outage (Unavailable), and the run is redelivered.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

from graphmesh.run_errors import RUN_ERRORS, is_retryable

__all__ = [
    "GraphmeshError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "ResourceExhausted",
    "DeadlineExceeded",
    "Unavailable",
    "PermissionDenied",
    "Unauthenticated",
    "Unimplemented",
    "ExecutionError",
]


class GraphmeshError(Exception):
    """Root of graphmesh errors. `code` is a stable machine-readable reason."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_code = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None, run_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.run_id = run_id


class InvalidArgument(GraphmeshError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    default_code = "INVALID_ARGUMENT"


class NotFound(GraphmeshError):
    status = grpc.StatusCode.NOT_FOUND
    default_code = "NOT_FOUND"


class AlreadyExists(GraphmeshError):
    status = grpc.StatusCode.ALREADY_EXISTS
    default_code = "ALREADY_EXISTS"


class FailedPrecondition(GraphmeshError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "FAILED_PRECONDITION"


class ResourceExhausted(GraphmeshError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(GraphmeshError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED
    default_code = "DEADLINE_EXCEEDED"


class Unavailable(GraphmeshError):
    status = grpc.StatusCode.UNAVAILABLE
    default_code = "UNAVAILABLE"


class PermissionDenied(GraphmeshError):
    status = grpc.StatusCode.PERMISSION_DENIED
    default_code = "PERMISSION_DENIED"


class Unauthenticated(GraphmeshError):
    status = grpc.StatusCode.UNAUTHENTICATED
    default_code = "UNAUTHENTICATED"


class Unimplemented(GraphmeshError):
    status = grpc.StatusCode.UNIMPLEMENTED
    default_code = "UNIMPLEMENTED"


class ExecutionError(GraphmeshError):
    """An error that ends a run; the run's error carries `run_error_code`, a code of
    graphmesh.run_errors.RUN_ERRORS, and `retryable` (from that table) says whether retrying
    the run unchanged may succeed. `code` defaults to the run error code."""

    run_error_code: ClassVar[str] = "INTERNAL"
    retryable: ClassVar[bool] = False
    default_code = "INTERNAL"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.run_error_code not in RUN_ERRORS:
            raise TypeError(f"{cls.__name__}.run_error_code {cls.run_error_code!r} is not in RUN_ERRORS")
        cls.retryable = is_retryable(cls.run_error_code)
        if "default_code" not in cls.__dict__:
            cls.default_code = cls.run_error_code
