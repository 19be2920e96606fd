"""The alert service's request dependencies: its runtime, a database session per request and
the API key with its role (``X-API-Key``, or ``?key=`` for the browser's EventSource, which
cannot send headers). Keys are handled by the shared kit, ``stationflow.apikeys``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from alerts.models import ApiKey
from alerts.runtime import Runtime
from alerts.schemas import Role
from stationflow.apikeys import KeyAuth

__all__ = [
    "BOOTSTRAP_NAME",
    "TOKEN_PREFIX",
    "AdminKey",
    "OperatorKey",
    "ReaderKey",
    "RuntimeDep",
    "SessionDep",
    "auth",
    "get_session",
    "runtime",
]

TOKEN_PREFIX = "sfa_"  # noqa: S105 - a marker to recognise our tokens, not a secret
BOOTSTRAP_NAME = "bootstrap admin"


def runtime(request: Request) -> Runtime:
    """The service's runtime."""
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    """One session per request."""
    with rt.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
auth = KeyAuth(ApiKey, roles=list(Role), get_session=get_session, query=True)
ReaderKey = Annotated[ApiKey, Depends(auth.require(Role.READ_ONLY))]
OperatorKey = Annotated[ApiKey, Depends(auth.require(Role.OPERATOR))]
AdminKey = Annotated[ApiKey, Depends(auth.require(Role.ADMIN))]
