"""One API-key kit for the registry and the alert service.

Both services keep their own key table (``api_keys`` and ``alert_api_keys``, same columns: the
:class:`ApiKeyColumns` mixin) and their own roles; everything else is here: how a token is
stored (its sha256 only), created, found and bootstrapped, the FastAPI dependency that checks a
request's key against a role (:class:`KeyAuth`), the error body (:class:`Message`), the 422 of a
body field (:func:`invalid`), the 422 of a value the database refuses (:func:`data_error`), the
UTC timestamp column type (:class:`UtcDateTime`) and :func:`utcnow`.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the
signatures of the dependencies built in :class:`KeyAuth`, whose annotations name local values.
"""

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel
from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from stationflow.contracts import utcnow

__all__ = [
    "DEFAULT_SECRET",
    "ApiKeyColumns",
    "InsecureSecretError",
    "KeyAuth",
    "Message",
    "UtcDateTime",
    "check_admin_key",
    "create_key",
    "data_error",
    "ensure_bootstrap_key",
    "find_key",
    "hash_token",
    "invalid",
    "utcnow",
]

logger = logging.getLogger(__name__)

DEFAULT_SECRET = "change-me"  # noqa: S105 - the well-known placeholder a deployment must replace


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as its UTC instant and always read back timezone-aware in UTC.

    SQLite keeps a +08:00 time's wall-clock digits and drops the offset, and hands back naive
    values; a naive value bound here is taken as UTC (never as the host's local time).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store the UTC instant."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ApiKeyColumns:
    """The columns of an API key table (mix into a declarative model that sets ``__tablename__``)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


K = TypeVar("K", bound=ApiKeyColumns)


class InsecureSecretError(ValueError):
    """A secret setting holds the well-known default outside dev."""


class Message(BaseModel):
    """An error or a plain answer."""

    detail: str


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    session: Session, *, model: type[K], name: str, role: str, token_prefix: str, token: str | None = None
) -> tuple[K, str]:
    """A new key (flushed, not committed) and its token, which is shown only now (a random one
    starting with ``token_prefix`` unless ``token`` is given)."""
    token = token or token_prefix + secrets.token_urlsafe(32)
    row = model()
    row.name, row.role, row.key_hash, row.prefix = name, str(role), hash_token(token), token[:10]
    session.add(row)
    session.flush()
    return row, token


def find_key(session: Session, *, model: type[K], token: str) -> K | None:
    """The key whose token this is, if any."""
    found: K | None = session.scalar(select(model).where(model.key_hash == hash_token(token)))
    return found


def ensure_bootstrap_key(
    session: Session, *, model: type[K], token: str, name: str, role: str = "admin"
) -> bool:
    """Make the configured bootstrap token valid (idempotent, committed); True if it was added now."""
    if find_key(session, model=model, token=token) is not None:
        return False
    create_key(session, model=model, name=name, role=role, token_prefix="", token=token)
    session.commit()
    return True


def check_admin_key(token: str, *, setting: str, dev: bool) -> None:
    """Refuse the well-known default ``change-me`` as an admin key, unless in dev.

    Raises :class:`InsecureSecretError` naming the environment variable to set.
    """
    if token.strip() != DEFAULT_SECRET:
        return
    if dev:
        logger.warning("admin key is the well-known default setting=%s (allowed: STATIONFLOW_DEV)", setting)
        return
    raise InsecureSecretError(
        f"{setting} is the well-known default {DEFAULT_SECRET!r}: set a secret of your own "
        "(or STATIONFLOW_DEV=true on a development machine)"
    )


def invalid(field: str, message: str) -> HTTPException:
    """A 422 in FastAPI's validation-error shape, naming the body field."""
    detail = [{"loc": ["body", field], "msg": message, "type": "value_error"}]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


async def data_error(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for ``sqlalchemy.exc.DataError``: a value the database refuses
    (PostgreSQL: a NUL in a text parameter) is a 422, not a 500."""
    cause = getattr(exc, "orig", None) or exc
    logger.info("database refused a request value path=%s error=%s", request.url.path, cause)
    detail = [
        {"loc": ["request"], "msg": f"value not accepted by the database: {cause}", "type": "value_error"}
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key token")
_query = APIKeyQuery(
    name="key", auto_error=False, description="API key (for EventSource, which has no headers)"
)
HeaderToken = Annotated[str | None, Security(_header)]
QueryToken = Annotated[str | None, Security(_query)]


class KeyAuth(Generic[K]):
    """Checks the request's ``X-API-Key`` (and, with ``query=True``, ``?key=`` for the browser's
    EventSource, which cannot send headers) against a key table and a role ranking.

    ``get_session`` is the service's session dependency; ``roles`` are the service's roles,
    lowest first (each may do what the ones before it may). ``auth.require(role)`` is the
    dependency of routes needing that role or more.
    """

    def __init__(
        self,
        model: type[K],
        *,
        roles: Iterable[str],
        get_session: Callable[..., Iterator[Session]],
        query: bool = False,
    ) -> None:
        self.model = model
        self.ranks = {str(role): rank for rank, role in enumerate(roles)}
        self.current_key = self._current_key_dependency(get_session, query=query)

    def _key_of(self, session: Session, token: str | None) -> K:
        if not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing API key: send it in the X-API-Key header"
            )
        key = find_key(session, model=self.model, token=token)
        if key is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key")
        return key

    def _current_key_dependency(
        self, get_session: Callable[..., Iterator[Session]], *, query: bool
    ) -> Callable[..., K]:
        def from_header(session: Annotated[Session, Depends(get_session)], header: HeaderToken) -> K:
            """The request's API key; 401 when missing or unknown."""
            return self._key_of(session, header)

        def from_header_or_query(
            session: Annotated[Session, Depends(get_session)], header: HeaderToken, key: QueryToken
        ) -> K:
            """The request's API key (header, else ``?key=``); 401 when missing or unknown."""
            return self._key_of(session, header or key)

        return from_header_or_query if query else from_header

    def require(self, role: str) -> Callable[..., K]:
        """A dependency accepting keys with ``role`` or a higher one; 403 otherwise."""
        current = self.current_key
        needed = self.ranks[str(role)]

        def check(key: Annotated[Any, Depends(current)]) -> K:
            found: K = key
            if self.ranks.get(found.role, -1) < needed:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"API key role '{found.role}' may not do this: it needs '{role}'",
                )
            return found

        return check
