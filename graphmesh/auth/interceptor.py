"""Authenticates every RPC (bearer token in the `authorization` metadata) and checks the
caller's roles against auth/rules.py before the call runs. Sits inside the error
interceptor, so UNAUTHENTICATED / PERMISSION_DENIED come out with their codes."""

from __future__ import annotations

import grpc

from graphmesh.auth.principals import Principal, development_principal, set_current
from graphmesh.auth.rules import METHOD_ROLES, PUBLIC_PREFIXES
from graphmesh.auth.tokens import TOKEN_PREFIX, JwtVerifier, TokenStore
from graphmesh.errors import PermissionDenied, Unauthenticated

PRINCIPAL_KEY = "gm-principal"  # development mode only: the caller names itself


class Authenticator:
    """mode 'token': a static token or a JWT is required; mode 'none' (development only):
    nobody is checked, callers name themselves in gm-principal and hold every role."""

    def __init__(self, mode: str, tokens: TokenStore | None, jwt: JwtVerifier | None) -> None:
        if mode not in ("token", "none"):
            raise ValueError(f"GRAPHMESH_AUTH must be 'token' or 'none', got {mode!r}")
        self.mode, self._tokens, self._jwt = mode, tokens, jwt

    async def authenticate(self, metadata) -> Principal:
        values = dict(metadata or ())
        if self.mode == "none":
            return development_principal(values.get(PRINCIPAL_KEY, ""))
        header = values.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' metadata",
                                  code="MISSING_TOKEN")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'", code="INVALID_TOKEN")
        token = token.strip()
        if token.startswith(TOKEN_PREFIX) and self._tokens is not None:
            found = await self._tokens.principal(token)
            if found is None:
                raise Unauthenticated("unknown or revoked token", code="INVALID_TOKEN")
            return found
        if token.count(".") == 2 and self._jwt is not None:
            return self._jwt.principal(token)
        raise Unauthenticated("unrecognised token", code="INVALID_TOKEN")


def authorize(method: str, principal: Principal) -> None:
    roles = METHOD_ROLES.get(method)
    if roles is None:
        raise PermissionDenied(f"{method} is not open to any caller", code="METHOD_NOT_ALLOWED")
    principal.require(*roles, action=f"call {method.rsplit('/', 1)[-1]}")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        method, metadata, auth = details.method, details.invocation_metadata, self._auth

        async def admit() -> None:
            principal = await auth.authenticate(metadata)
            authorize(method, principal)
            set_current(principal)  # the call's own task context: nothing leaks to other calls

        if handler.unary_unary:
            behavior = handler.unary_unary

            async def unary(request, context):
                await admit()
                return await behavior(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream:
            stream_behavior = handler.unary_stream

            async def stream(request, context):
                await admit()
                async for item in stream_behavior(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream, handler.request_deserializer,
                                                        handler.response_serializer)
        raise RuntimeError(f"{method}: streaming requests are not used by graphmesh")
