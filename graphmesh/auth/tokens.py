"""Bearer tokens: static API tokens (only their SHA-256 is stored) and signed JWTs (PyJWT).

A static token is `gm_<token id>_<secret>` with 32 random bytes of secret, so a fast
hash is safe to store (as GitHub and others do for high-entropy tokens); the plain token
is shown once, when it is created. A JWT is verified with GRAPHMESH_JWT_SECRET (HS256) or
GRAPHMESH_JWT_PUBLIC_KEY (a PEM file, RS256/ES256), audience `graphmesh`; its `sub` is the
principal, `roles` and `graphs` its roles and graph scopes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from graphmesh.auth.principals import ALL_GRAPHS, ROLES, Principal
from graphmesh.errors import FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from graphmesh.store.tokens import (
    active_admins,
    active_token,
    insert_token,
    list_tokens,
    revoke_token,
    token_by_hash,
)

TOKEN_PREFIX = "gm_"
JWT_AUDIENCE = "graphmesh"
CACHE_SECONDS = 10.0  # a revoked token stops working everywhere within this long


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token id, plain token)."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_grant(principal: str, roles: list[str], graphs: list[str]) -> None:
    """Roles: at least one of the built-in ones, plus any approval roles (e.g. finance)."""
    if not _NAME.fullmatch(principal or ""):
        raise InvalidArgument(f"principal must match {_NAME.pattern}, got {principal!r}", code="INVALID_PRINCIPAL")
    if not any(r in ROLES for r in roles) or not all(_NAME.fullmatch(r) for r in roles):
        raise InvalidArgument(f"roles must include one of {', '.join(ROLES)} (others are approval roles "
                              f"matching {_NAME.pattern}), got {roles}", code="INVALID_ROLES")
    if not all(g == ALL_GRAPHS or _NAME.fullmatch(g) for g in graphs):
        raise InvalidArgument(f"graphs must be graph names or '*', got {graphs}", code="INVALID_GRAPHS")


# A bootstrap token from a Secret must be hard to guess, whatever its format.
MIN_BOOTSTRAP_TOKEN_LENGTH = 32


@dataclass(frozen=True)
class Bootstrap:
    """What `graphmesh migrate --admin` did: the admin token that now exists, and its plain
    text only when it was made just now (shown once)."""

    token_id: str
    principal: str
    created: bool
    token: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    principal: str
    roles: list[str]
    graphs: list[str]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class TokenStore:
    def __init__(self, runs) -> None:
        self._runs = runs  # RunStore: its pool and connection handling
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def create(self, principal: str, roles: list[str], graphs: list[str], *, created_by: str) -> tuple[str, str]:
        """Stores a new token's hash; returns (token id, plain token), shown only now."""
        check_grant(principal, roles, graphs)
        token_id, token = new_token()
        async with self._runs.connection() as conn:
            await insert_token(conn, token_id, principal, roles, graphs or [ALL_GRAPHS], hash_token(token),
                               created_by)
        return token_id, token

    async def bootstrap_admin(self, principal: str, *, token: str = "", created_by: str) -> Bootstrap:
        """The first admin token of a deployment, idempotent (a migration Job runs on every
        upgrade). With `token` (e.g. from a Kubernetes Secret) that exact token is registered
        for `principal` as admin unless it is already; a revoked one is refused. Without, a
        new token is made only when no active admin token exists."""
        check_grant(principal, ["admin"], [ALL_GRAPHS])
        async with self._runs.connection() as conn:
            if token:
                if len(token) < MIN_BOOTSTRAP_TOKEN_LENGTH:
                    raise InvalidArgument(f"the bootstrap token must be at least {MIN_BOOTSTRAP_TOKEN_LENGTH} "
                                          "characters", code="BOOTSTRAP_TOKEN_TOO_SHORT")
                found = await token_by_hash(conn, hash_token(token))
                if found is not None:
                    if found["revoked_at"] is not None:
                        raise FailedPrecondition(f"the bootstrap token (id {found['token_id']}) was revoked; put a "
                                                 "new one in the Secret", code="BOOTSTRAP_TOKEN_REVOKED")
                    return Bootstrap(found["token_id"], found["principal"], created=False)
                token_id = "boot-" + hash_token(token)[:8]
                await insert_token(conn, token_id, principal, ["admin"], [ALL_GRAPHS], hash_token(token), created_by)
                return Bootstrap(token_id, principal, created=True)
            admins = await active_admins(conn)
            if admins:
                return Bootstrap(admins[0]["token_id"], admins[0]["principal"], created=False)
            token_id, plain = new_token()
            await insert_token(conn, token_id, principal, ["admin"], [ALL_GRAPHS], hash_token(plain), created_by)
            return Bootstrap(token_id, principal, created=True, token=plain)

    async def list(self) -> list[TokenRecord]:
        async with self._runs.connection() as conn:
            rows = await list_tokens(conn)
        return [TokenRecord(**r) for r in rows]

    async def revoke(self, token_id: str) -> None:
        async with self._runs.connection() as conn:
            revoked = await revoke_token(conn, token_id)
        if not revoked:
            raise NotFound(f"no active token '{token_id}'", code="TOKEN_NOT_FOUND")
        self._cache.clear()

    async def principal(self, token: str) -> Principal | None:
        """The principal a static token belongs to; None if unknown or revoked."""
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self._runs.connection() as conn:
            row = await active_token(conn, digest)
        found = None if row is None else Principal(row["principal"], frozenset(row["roles"]),
                                                   frozenset(row["graphs"]), via=f"token:{row['token_id']}")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, found)
        return found


class JwtVerifier:
    def __init__(self, key: Any, algorithms: list[str], issuer: str | None = None) -> None:
        self._key, self._algorithms, self._issuer = key, algorithms, issuer

    @classmethod
    def from_settings(cls, secret: str, public_key_file: str, issuer: str) -> "JwtVerifier | None":
        if public_key_file:
            with open(public_key_file, encoding="utf-8") as f:
                return cls(f.read(), ["RS256", "ES256"], issuer or None)
        if secret:
            return cls(secret, ["HS256"], issuer or None)
        return None

    def principal(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._key, algorithms=self._algorithms, audience=JWT_AUDIENCE,
                                issuer=self._issuer, options={"require": ["sub", "exp"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}", code="INVALID_TOKEN") from None
        roles = claims.get("roles") or []
        graphs = claims.get("graphs") or [ALL_GRAPHS]
        if not isinstance(roles, list) or not isinstance(graphs, list):
            raise Unauthenticated("invalid token: 'roles' and 'graphs' must be lists", code="INVALID_TOKEN")
        return Principal(str(claims["sub"]), frozenset(map(str, roles)), frozenset(map(str, graphs)), via="jwt")


def issue_jwt(secret: str, subject: str, roles: list[str], graphs: list[str] | None = None, *,
              ttl_seconds: int = 3600, issuer: str | None = None) -> str:
    """An HS256 token for `subject` (tests and local tooling; production issuers are your IdP)."""
    now = int(time.time())
    claims = {"sub": subject, "roles": roles, "graphs": graphs or [ALL_GRAPHS], "aud": JWT_AUDIENCE,
              "iat": now, "exp": now + ttl_seconds}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
