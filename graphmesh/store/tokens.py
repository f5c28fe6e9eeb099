"""Static API tokens in Postgres (gm_api_tokens): only a token's SHA-256 is stored. The
token rules, hashing and the look-up cache are graphmesh/auth/tokens.py."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

INSERT_TOKEN = ("INSERT INTO gm_api_tokens (token_id, principal, roles, graphs, token_hash, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s)")
SELECT_TOKENS = ("SELECT token_id, principal, roles, graphs, created_by, created_at, revoked_at "
                 "FROM gm_api_tokens ORDER BY created_at")
REVOKE_TOKEN = "UPDATE gm_api_tokens SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL"
SELECT_ACTIVE_ADMINS = ("SELECT token_id, principal FROM gm_api_tokens "
                        "WHERE revoked_at IS NULL AND roles ? 'admin' ORDER BY created_at")
SELECT_TOKEN_BY_HASH = "SELECT token_id, principal, revoked_at FROM gm_api_tokens WHERE token_hash = %s"
SELECT_ACTIVE_TOKEN = ("SELECT token_id, principal, roles, graphs FROM gm_api_tokens "
                       "WHERE token_hash = %s AND revoked_at IS NULL")


async def insert_token(conn: Any, token_id: str, principal: str, roles: list[str], graphs: list[str],
                       token_hash: str, created_by: str) -> None:
    await conn.execute(INSERT_TOKEN, (token_id, principal, Jsonb(roles), Jsonb(graphs), token_hash, created_by))


async def active_admins(conn: Any) -> list[dict[str, Any]]:
    """Active tokens holding the admin role: token_id, principal."""
    return await (await conn.execute(SELECT_ACTIVE_ADMINS)).fetchall()


async def token_by_hash(conn: Any, token_hash: str) -> dict[str, Any] | None:
    """The token with this hash, revoked or not: token_id, principal, revoked_at."""
    return await (await conn.execute(SELECT_TOKEN_BY_HASH, (token_hash,))).fetchone()


async def list_tokens(conn: Any) -> list[dict[str, Any]]:
    """Every token, revoked ones included, oldest first (never its hash)."""
    return await (await conn.execute(SELECT_TOKENS)).fetchall()


async def revoke_token(conn: Any, token_id: str) -> bool:
    """Revokes an active token; False when there is no active token of that id."""
    return (await conn.execute(REVOKE_TOKEN, (token_id,))).rowcount == 1


async def active_token(conn: Any, token_hash: str) -> dict[str, Any] | None:
    """The active token with this hash: token_id, principal, roles, graphs; None if none."""
    return await (await conn.execute(SELECT_ACTIVE_TOKEN, (token_hash,))).fetchone()
