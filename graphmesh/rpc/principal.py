"""Who is calling. Until authentication lands, callers name themselves in the
`gm-principal` metadata key; the recorded actor of every change comes from here."""

from __future__ import annotations

PRINCIPAL_KEY = "gm-principal"
ANONYMOUS = "anonymous"


def principal(context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == PRINCIPAL_KEY and value:
            return value
    return ANONYMOUS
