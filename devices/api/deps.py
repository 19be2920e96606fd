"""Dependencies: database session, API key with role checks (``stationflow.apikeys``), outbox,
status tracker, provisioner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from devices import crud
from devices.models import ApiKey
from devices.provisioning import Provisioner
from devices.relay import OutboxRelay
from devices.schemas import Role
from devices.settings import RegistrySettings
from devices.status import StatusTracker
from stationflow.apikeys import KeyAuth, invalid

__all__ = [
    "TOKEN_PREFIX",
    "AdminKey",
    "IntegratorKey",
    "Outbox",
    "OutboxDep",
    "ProvisionerDep",
    "ReaderKey",
    "Runtime",
    "SessionDep",
    "TrackerDep",
    "auth",
    "invalid",
    "merged",
]

M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class Runtime:
    """What the lifespan created, kept on ``app.state.runtime``."""

    engine: Engine
    sessions: sessionmaker[Session]
    relay: OutboxRelay
    tracker: StatusTracker
    provisioner: Provisioner
    settings: RegistrySettings


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(request: Request) -> Iterator[Session]:
    """One session per request."""
    with _runtime(request).sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Outbox:
    """Registry changes: queued in the request's transaction, then published by the relay."""

    relay: OutboxRelay
    wait_s: float

    def queue(self, session: Session, device_ids: list[str]) -> None:
        """Queue these devices' records (call before the commit of the change)."""
        crud.queue_changes(session, device_ids=device_ids)

    async def published(self) -> bool:
        """After the commit: wait (bounded, not while Kafka is down) for Kafka's acknowledgement.

        Answering only then keeps "2xx = the worker can know it" while Kafka is up; when it is
        not, the change is committed and stays in the outbox until the relay gets it through.
        """
        return await self.relay.wait_published(self.wait_s)


def get_outbox(request: Request) -> Outbox:
    """Where device changes are queued for publication."""
    runtime = _runtime(request)
    return Outbox(runtime.relay, runtime.settings.registry_publish_wait_s)


def get_tracker(request: Request) -> StatusTracker:
    """The in-memory device status counters."""
    return _runtime(request).tracker


def get_provisioner(request: Request) -> Provisioner:
    """Issues and manages the devices' MQTT credentials."""
    return _runtime(request).provisioner


OutboxDep = Annotated[Outbox, Depends(get_outbox)]
ProvisionerDep = Annotated[Provisioner, Depends(get_provisioner)]
TrackerDep = Annotated[StatusTracker, Depends(get_tracker)]

TOKEN_PREFIX = "sfk_"  # noqa: S105  (a marker to recognise our tokens, not a secret)
auth = KeyAuth(ApiKey, roles=list(Role), get_session=get_session)
ReaderKey = Annotated[ApiKey, Depends(auth.require(Role.READ_ONLY))]
IntegratorKey = Annotated[ApiKey, Depends(auth.require(Role.INTEGRATOR))]
AdminKey = Annotated[ApiKey, Depends(auth.require(Role.ADMIN))]


def merged(model: type[M], current: BaseModel, patch: BaseModel) -> M:
    """``current`` with the fields set in ``patch``, validated again as ``model`` (422 if not valid)."""
    data: dict[str, Any] = current.model_dump() | patch.model_dump(exclude_unset=True)
    try:
        return model.model_validate({k: v for k, v in data.items() if k in model.model_fields})
    except ValidationError as exc:
        found = exc.errors(include_url=False, include_context=False)
        errors = [{**e, "loc": ("body", *e["loc"])} for e in found]
        raise RequestValidationError(errors) from exc
