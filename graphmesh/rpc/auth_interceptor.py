"""Authenticates every RPC (bearer token in the `authorization` metadata) and checks the
caller's roles against auth/rules.py before the call runs. Sits inside the error
interceptor, so UNAUTHENTICATED / PERMISSION_DENIED come out with their codes. The
authentication itself is graphmesh/auth/authenticator.py; this is its gRPC plumbing."""

from __future__ import annotations

import grpc

from graphmesh.auth.authenticator import Authenticator, authorize
from graphmesh.auth.principals import set_current
from graphmesh.auth.rules import PUBLIC_PREFIXES
from graphmesh.rpc.handlers import run_before


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        method, metadata, auth = details.method, details.invocation_metadata, self._auth

        async def admit(request, context) -> None:
            principal = await auth.authenticate(metadata)
            authorize(method, principal)
            set_current(principal)  # the call's own task context: nothing leaks to other calls

        return run_before(handler, admit)
