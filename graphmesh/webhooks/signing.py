"""Signing deliveries the Standard Webhooks way (standardwebhooks.com), so receivers verify
them with any of its libraries: `webhook-id` (the delivery id: the same on every retry and
replay, for deduplication), `webhook-timestamp` (seconds, this attempt's: receivers refuse
old ones, which stops replays of a captured request) and `webhook-signature`
("v1,<base64 HMAC-SHA256 of id.timestamp.body>" under the deployment's secret)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 random bytes.
MIN_SECRET_BYTES = 24


def check_secret(secret: str) -> bytes:
    """The key a "whsec_<base64>" secret holds; ValueError naming the variable otherwise,
    so a mistyped secret stops the api at start instead of signing with a weak key."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("GRAPHMESH_WEBHOOK_SECRET must be whsec_ followed by base64 "
                         "(e.g. `python -c \"import os,base64;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\"`)")\
            from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"GRAPHMESH_WEBHOOK_SECRET holds {len(key)} bytes; use at least {MIN_SECRET_BYTES} random bytes")
    return key


def new_secret(nbytes: int = 32) -> str:
    """A fresh secret in the Standard Webhooks form (what `graphmesh up` generates)."""
    import os

    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode()


class Signer:
    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(check_secret(secret))

    def headers(self, delivery_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        now = now or datetime.now(timezone.utc)
        return {
            "webhook-id": delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(delivery_id, now, body.decode()),
        }
