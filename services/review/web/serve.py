"""Serves the review page (uvicorn) inside the review process's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    # The review process owns SIGTERM/SIGINT (ServiceHost): uvicorn must not take them over.
    @contextlib.contextmanager
    def capture_signals(self):
        yield


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"GRAPHMESH_REVIEW_WEB_LISTEN must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class ReviewPageServer:
    def __init__(self, app, listen: str, *, ssl_certfile: str = "", ssl_keyfile: str = "") -> None:
        host, port = split_listen(listen)
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False, log_config=None,
                                timeout_graceful_shutdown=3, ssl_certfile=ssl_certfile or None,
                                ssl_keyfile=ssl_keyfile or None)
        self._server = _EmbeddedServer(config)
        self._ended = asyncio.Event()
        self.scheme = "https" if ssl_certfile else "http"

    async def serve(self) -> None:
        """Until stop(); uvicorn exits the process when it cannot bind (a misconfiguration)."""
        try:
            await self._server.serve()
        finally:
            self._ended.set()
        if not self._server.should_exit:
            raise RuntimeError("the review page's HTTP server stopped")

    async def stop(self) -> None:
        """Stops accepting; open streams get timeout_graceful_shutdown to end."""
        self._server.should_exit = True
        if self._server.started:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ended.wait(), 5)
