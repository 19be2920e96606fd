"""API keys of the alert service: ``X-API-Key`` header (or ``?key=`` for the browser's
EventSource, which cannot send headers); only the sha256 of a token is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.models import ApiKey
from alerts.schemas import Role

__all__ = ["ROLE_RANK", "create_key", "ensure_bootstrap_key", "find_key", "hash_token"]

ROLE_RANK = {Role.READ_ONLY: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
PREFIX = "sfa_"


def hash_token(token: str) -> str:
    """sha256 hex of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, *, name: str, role: Role, token: str | None = None) -> tuple[ApiKey, str]:
    """A new key (flushed, not committed) and its token, which is shown only now."""
    token = token or PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role.value, key_hash=hash_token(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return row, token


def find_key(session: Session, token: str) -> ApiKey | None:
    """The key of ``token``, if any."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(token)))


def ensure_bootstrap_key(session: Session, token: str) -> bool:
    """Make sure the configured admin token exists; True if it was created now."""
    if find_key(session, token) is not None:
        return False
    create_key(session, name="bootstrap admin", role=Role.ADMIN, token=token)
    session.commit()
    return True
