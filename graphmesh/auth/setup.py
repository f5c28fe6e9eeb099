"""Building a process's authenticator and TLS settings from its Settings."""

from __future__ import annotations

from graphmesh.auth.authenticator import Authenticator
from graphmesh.auth.tokens import JwtVerifier, TokenStore


def make_authenticator(settings, store, tokens: TokenStore | None = None) -> Authenticator:
    """Static tokens are looked up in Postgres (through `store`'s pool, or the given token
    store, so a process that revokes a token forgets it at once); JWTs are verified with the
    configured key, if any."""
    jwt = JwtVerifier.from_settings(settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_issuer)
    return Authenticator(settings.auth, tokens or TokenStore(store), jwt)
