"""Who a caller is and whether a method is open to them: a bearer token (static token or
JWT) in the call's metadata becomes a Principal, checked against auth/rules.py. No gRPC
here: the server interceptor that runs this for every RPC is graphmesh/rpc/auth_interceptor.py."""

from __future__ import annotations

from graphmesh.auth.principals import Principal, development_principal
from graphmesh.auth.rules import METHOD_ROLES
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
