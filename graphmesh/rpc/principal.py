"""Who is calling: the principal the auth interceptor authenticated for this call
(graphmesh/auth). The recorded actor of every change comes from here, never from a field
of the request."""

from __future__ import annotations

from graphmesh.auth.authenticator import PRINCIPAL_KEY
from graphmesh.auth.principals import Principal, current

__all__ = ["PRINCIPAL_KEY", "principal", "caller"]


def caller(context=None) -> Principal:
    return current()


def principal(context=None) -> str:
    return current().name
