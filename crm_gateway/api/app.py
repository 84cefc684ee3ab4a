"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from requests.exceptions import ConnectionError as RequestsConnectionError

from crm_gateway.api.body_limit import BodyLimitMiddleware
from crm_gateway.api.errors import ProblemResponse, install_problem_handlers, problem_response
from crm_gateway.api.routers import (
    audit,
    consents,
    console,
    customers,
    erasure,
    health,
    loyalty,
    me,
    operations,
    orgs,
    roles,
    wallets,
)
from crm_gateway.api.sessions import install_session_stores
from crm_gateway.api.web import install_web
from crm_gateway.chain.connection import ChainUnavailable
from crm_gateway.config import Settings, get_settings
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.errors import DomainError


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
        if settings.indexer_enabled:
            current.index_worker.start()
        if settings.audit_anchor_enabled and settings.pipeline_enabled:
            current.anchor_worker.start()
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
        # /docs is served from the gateway's own assets (web.py), never from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    install_session_stores(app.state, settings)
    install_web(app, settings)
    app.add_exception_handler(DomainError, _domain_problem)
    app.add_exception_handler(ChainUnavailable, _chain_unreachable)
    app.add_exception_handler(RequestsConnectionError, _chain_unreachable)
    # Routes are matched in order, one by one: the hot reads (consent checks) come first.
    for router in (
        health.router,
        consents.router,
        orgs.router,
        roles.router,
        customers.router,
        wallets.router,
        loyalty.router,
        operations.router,
        audit.router,
        me.router,
        erasure.router,
        console.router,
    ):
        app.include_router(router)
    return app


async def _domain_problem(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, DomainError)
    return problem_response(
        exc.status, exc.slug, exc.title, exc.detail, instance=request.url.path, **exc.extensions
    )


async def _chain_unreachable(request: Request, exc: Exception) -> ProblemResponse:
    return problem_response(
        503,
        "chain-unavailable",
        "Chain unavailable",
        "the chain node does not answer; try again shortly",
        instance=request.url.path,
        headers={"Retry-After": "2"},
    )
