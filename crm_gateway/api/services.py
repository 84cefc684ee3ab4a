"""FastAPI dependencies that hand routers their services, built on the app's runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm_gateway.runtime import Runtime
from crm_gateway.services.access import AccessService
from crm_gateway.services.consent import ConsentService
from crm_gateway.services.customers import CustomerService
from crm_gateway.services.operations import OperationService


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_access_service(runtime: RuntimeDep) -> AccessService:
    return AccessService(runtime.contracts)


def get_operation_service(runtime: RuntimeDep) -> OperationService:
    return OperationService(runtime.session_factory, runtime.pipeline)


AccessDep = Annotated[AccessService, Depends(get_access_service)]
OperationsDep = Annotated[OperationService, Depends(get_operation_service)]


def get_consent_service(runtime: RuntimeDep) -> ConsentService:
    return ConsentService(
        contracts=runtime.contracts,
        read_model=runtime.read_model,
        signature_ttl_seconds=runtime.settings.signature_ttl_seconds,
    )


ConsentDep = Annotated[ConsentService, Depends(get_consent_service)]


def get_customer_service(runtime: RuntimeDep) -> CustomerService:
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
        consent=get_consent_service(runtime),
        roles=runtime.read_model,
    )


CustomersDep = Annotated[CustomerService, Depends(get_customer_service)]
