"""The gateway's Starlette application: the routes of every endpoint module, CORS for
browser clients (agent-chat-ui, agent-inbox), and errors as `{"detail": ...}`."""

from __future__ import annotations

import contextlib
import importlib
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from services.gateway.context import Gateway
from services.gateway.errors import EXCEPTION_HANDLERS

log = logging.getLogger(__name__)

# Each module has `routes() -> list[BaseRoute]`. Order matters where paths overlap: the
# fixed /runs/crons paths come before the runs module's /runs/{...} patterns.
ROUTE_MODULES = ("meta", "assistants", "threads", "crons", "store", "runs")

EXPOSE_HEADERS = ["Content-Location", "Location", "X-Pagination-Next", "X-Pagination-Total"]


def collect_routes(modules: tuple[str, ...] = ROUTE_MODULES) -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for name in modules:
        qualified = f"{__package__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
            log.warning("gateway module %s is missing: its endpoints are not served", qualified)
            continue
        found.extend(module.routes())
    return found


def cors_origins(setting: str) -> list[str]:
    return [o.strip() for o in setting.split(",") if o.strip()]


def create_app(gateway: Gateway) -> Starlette:
    origins = cors_origins(gateway.settings.gateway_cors_origins)
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            # Credentials travel in headers (Authorization, X-Api-Key), never cookies; a
            # wildcard origin cannot be combined with credentialed requests anyway.
            allow_credentials="*" not in origins,
            allow_methods=["*"],
            # Any request header, as the reference server: the SDKs add their own
            # (Authorization, X-Api-Key, Last-Event-ID, Content-Type, ...).
            allow_headers=["*"],
            expose_headers=EXPOSE_HEADERS,
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            gateway.stopping.set()
            await gateway.close()

    app = Starlette(routes=collect_routes(), middleware=middleware, exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    app.state.gateway = gateway
    return app
