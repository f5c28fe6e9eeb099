"""The gateway process: settings from GRAPHMESH_* variables, JSON logs, the Starlette app
served by uvicorn on GRAPHMESH_GATEWAY_LISTEN (HTTPS with GRAPHMESH_TLS_CERT_FILE/KEY_FILE,
like the review page), and an orderly stop on SIGTERM/SIGINT: open streams are told to
end (clients reconnect to another replica with Last-Event-ID), then the server drains."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from graphmesh.config import Settings
from graphmesh.logs import setup_logging
from graphmesh.telemetry.metrics import setup_metrics
from services.gateway.app import create_app
from services.gateway.context import Gateway

log = logging.getLogger(__name__)

# Seconds open connections get to finish once the process is told to stop.
GRACEFUL_SHUTDOWN_SECONDS = 5


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"GRAPHMESH_GATEWAY_LISTEN must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self._gateway = gateway

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn re-raises the signal once it has drained (the process then dies of it);
        # a stop asked for is a clean exit here, status 0, like the other services.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig, frame) -> None:
        # First thing on SIGTERM: streams see `stopping` and end, so the graceful
        # shutdown is not held up by SSE connections that would never close.
        self._gateway.stopping.set()
        super().handle_exit(sig, frame)


async def main() -> int:
    settings = Settings.from_env()
    setup_logging("gateway", settings.log_level)
    setup_metrics("gateway", settings.metrics_listen)
    host, port = split_listen(settings.gateway_listen)
    gateway = Gateway(settings)
    config = uvicorn.Config(
        create_app(gateway), host=host, port=port, lifespan="on", access_log=False, log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None, proxy_headers=False, server_header=False,
    )
    server = _GatewayServer(config, gateway)
    scheme = "https" if settings.tls_cert_file else "http"
    log.info("LangGraph HTTP API on %s://%s:%s over the api at %s (review: %s)", scheme, host, port,
             settings.api_address, settings.review_address or "none")
    await server.serve()
    log.info("stopped")
    # uvicorn returns without raising when it cannot bind; started tells the two apart.
    return 0 if server.started else 1
