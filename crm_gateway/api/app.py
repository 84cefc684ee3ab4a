"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from crm_gateway.api.errors import install_problem_handlers
from crm_gateway.api.routers import health, operations, orgs, roles
from crm_gateway.config import Settings, get_settings
from crm_gateway.runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the gateway. Without a runtime, one is built (and closed) by the app's lifespan."""
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        current = runtime or build_runtime(settings)
        app.state.runtime = current
        app.state.settings = current.settings
        app.state.session_factory = current.session_factory
        if settings.pipeline_enabled:
            current.pipeline.start()
        try:
            yield
        finally:
            if owned:
                current.close()

    app = FastAPI(
        title="crm-chaincode gateway",
        version="0.1.0",
        summary="Permissioned CRM chaincode: organisations, roles and chain writes over REST.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for router in (health.router, orgs.router, roles.router, operations.router):
        app.include_router(router)
    return app
