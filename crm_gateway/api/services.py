"""FastAPI dependencies that hand routers their services, built on the app's runtime.

The services hold no per-request state, so each is built once per app (on first use) and shared;
the dependencies are `async def` because they do no I/O (a plain `def` dependency costs a hand-off
to the thread pool on every request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from crm_gateway.runtime import Runtime
from crm_gateway.services.access import AccessService
from crm_gateway.services.consent import ConsentService
from crm_gateway.services.customers import CustomerService
from crm_gateway.services.operations import OperationService
from crm_gateway.services.wallets import WalletService

T = TypeVar("T")


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _shared(request: Request, build: Callable[[Runtime], T]) -> T:
    """The service `build` makes from the app's runtime, built once per runtime."""
    state = request.app.state
    runtime: Runtime = state.runtime
    services: dict[Callable[[Runtime], Any], tuple[Runtime, Any]] | None = getattr(
        state, "services", None
    )
    if services is None:
        services = state.services = {}
    cached = services.get(build)
    if cached is None or cached[0] is not runtime:
        cached = services[build] = (runtime, build(runtime))
    service: T = cached[1]
    return service


def access_service(runtime: Runtime) -> AccessService:
    return AccessService(runtime.contracts, keystore=runtime.keystore)


def operation_service(runtime: Runtime) -> OperationService:
    return OperationService(runtime.session_factory, runtime.pipeline)


def consent_service(runtime: Runtime) -> ConsentService:
    return ConsentService(
        contracts=runtime.contracts,
        read_model=runtime.read_model,
        signature_ttl_seconds=runtime.settings.signature_ttl_seconds,
    )


def customer_service(runtime: Runtime) -> CustomerService:
    settings = runtime.settings
    return CustomerService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        operations=OperationService(runtime.session_factory, runtime.pipeline),
        vault=runtime.vault,
        indexer=runtime.indexer,
        gateway_org_id=settings.gateway_org_id,
        phone_region=settings.default_phone_region,
        signature_ttl_seconds=settings.signature_ttl_seconds,
        consent=consent_service(runtime),
        roles=runtime.read_model,
    )


def wallet_service(runtime: Runtime) -> WalletService:
    return WalletService(
        customers=customer_service(runtime),
        contracts=runtime.contracts,
        operations=OperationService(runtime.session_factory, runtime.pipeline),
        gateway_org_id=runtime.settings.gateway_org_id,
        signature_ttl_seconds=runtime.settings.signature_ttl_seconds,
    )


async def get_access_service(request: Request) -> AccessService:
    return _shared(request, access_service)


async def get_operation_service(request: Request) -> OperationService:
    return _shared(request, operation_service)


async def get_consent_service(request: Request) -> ConsentService:
    return _shared(request, consent_service)


async def get_customer_service(request: Request) -> CustomerService:
    return _shared(request, customer_service)


async def get_wallet_service(request: Request) -> WalletService:
    return _shared(request, wallet_service)


AccessDep = Annotated[AccessService, Depends(get_access_service)]
OperationsDep = Annotated[OperationService, Depends(get_operation_service)]
ConsentDep = Annotated[ConsentService, Depends(get_consent_service)]
CustomersDep = Annotated[CustomerService, Depends(get_customer_service)]
WalletsDep = Annotated[WalletService, Depends(get_wallet_service)]
