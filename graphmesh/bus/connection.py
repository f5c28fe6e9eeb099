"""The one factory for NATS connections."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS

from graphmesh.errors import Unavailable

log = logging.getLogger(__name__)


def server_urls(url: str) -> list[str]:
    """A NATS URL, or a comma-separated list of a cluster's servers (each may carry its
    credentials); the client fails over between them."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not urls:
        raise ValueError("the NATS URL is empty")
    return urls


async def connect_nats(url: str, *, name: str, connect_timeout: float = 5.0) -> NATS:
    """Connects with unbounded reconnects: a restarted NATS server is waited for, not fatal.
    `url` may list a cluster's servers, comma-separated."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    nc = NATS()

    async def on_disconnected() -> None:
        if not nc.is_closed:  # a deliberate close is not news
            log.warning("nats disconnected from %s", url)

    async def on_reconnected() -> None:
        log.info("nats reconnected to %s", url)

    try:
        await nc.connect(
            servers=server_urls(url),
            name=name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
        return nc
    except Exception as exc:  # nats raises several unrelated types for "cannot connect"
        log.warning("cannot connect to NATS: %s", exc)
        raise Unavailable("NATS is unreachable; retry shortly") from exc


def require_connected(nc: NATS) -> None:
    """Refuses work up front while NATS is away, so nothing half-created is left behind."""
    if not nc.is_connected:
        raise Unavailable("NATS is unreachable; nothing was created, retry shortly")
