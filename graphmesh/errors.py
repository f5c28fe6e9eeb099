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
    └── Unimplemented          UNIMPLEMENTED        a valid request this release does not serve

Services raise these; one server interceptor (graphmesh.rpc.errors) turns them into
status codes with readable messages, and anything else into INTERNAL without leaking
its stack trace to the client.
"""

from __future__ import annotations

import grpc

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
