"""FastAPI dependencies that hand routers their services, built on the app's runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm_gateway.runtime import Runtime
from crm_gateway.services.access import AccessService
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
