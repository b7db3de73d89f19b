"""What route handlers receive: the store, the caller's tenant, the URL signer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ckptstore.config import ServerSettings
from ckptstore.server.admission import UploadAdmission
from ckptstore.server.auth import KeyCache
from ckptstore.server.errors import ApiError
from ckptstore.server.gc_worker import GcWorker
from ckptstore.server.metrics import Metrics
from ckptstore.server.signing import UrlSigner
from ckptstore.store.checkpoints import CheckpointStore


@dataclass
class Services:
    store: CheckpointStore
    signer: UrlSigner
    settings: ServerSettings
    gc: GcWorker
    metrics: Metrics
    uploads: UploadAdmission
    keys: KeyCache


# Both dependencies are async on purpose: FastAPI runs a sync dependency in the thread
# pool, a hop that costs more than these microsecond look-ups (bench/server.py).
async def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def tenant(request: Request) -> str:
    """The tenant of the request's API key; 401 without a valid one."""
    svc: Services = request.app.state.services
    found = svc.keys.key_for(request.headers.get("authorization"))
    if found is not None:
        request.state.tenant = found.tenant_id  # for the request's log line
        return found.tenant_id
    if svc.settings.anonymous_tenant and "authorization" not in request.headers:
        request.state.tenant = svc.settings.anonymous_tenant
        return svc.settings.anonymous_tenant
    raise _unauthorized()


async def admin(request: Request) -> str:
    """The tenant of the request's admin key; 401 without a valid key, 403 with a
    tenant's. Store-wide figures and operations tell one tenant about the others'
    data, so only an operator gets them."""
    svc: Services = request.app.state.services
    found = svc.keys.key_for(request.headers.get("authorization"))
    if found is None:
        raise _unauthorized()
    request.state.tenant = found.tenant_id
    if not found.admin:
        raise ApiError(403, "admin_required", "this needs an admin key (keys create --admin)")
    return found.tenant_id


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "missing or invalid API key: send 'Authorization: Bearer <key>'",
        {"WWW-Authenticate": "Bearer"},
    )


ServicesDep = Annotated[Services, Depends(services)]
TenantDep = Annotated[str, Depends(tenant)]
AdminDep = Annotated[str, Depends(admin)]
