"""``/api-keys``: admins create (token shown once), list and revoke keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from devices import crud
from devices.api.deps import TOKEN_PREFIX, AdminKey, SessionDep
from devices.models import ApiKey
from devices.schemas import ERRORS, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeysPublic, Message, Role
from stationflow import apikeys

router = APIRouter(prefix="/api-keys", tags=["api-keys"], responses=ERRORS)


def _public(row: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=row.id, name=row.name, role=Role(row.role), prefix=row.prefix, created_at=row.created_at
    )


@router.get("")
def list_keys(session: SessionDep, _key: AdminKey) -> ApiKeysPublic:
    """All keys (never their tokens)."""
    rows, total = crud.list_rows(session, model=ApiKey, limit=10_000)
    return ApiKeysPublic(data=[_public(r) for r in rows], count=total)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_key(body: ApiKeyCreate, session: SessionDep, _key: AdminKey) -> ApiKeyCreated:
    """Create a key; the answer holds the token, which is not stored and cannot be shown again."""
    row, token = apikeys.create_key(
        session, model=ApiKey, name=body.name, role=body.role, token_prefix=TOKEN_PREFIX
    )
    session.commit()
    return ApiKeyCreated(**_public(row).model_dump(), token=token)


@router.delete("/{key_id}", responses={404: {"model": Message, "description": "no such key"}})
def delete_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, _key: AdminKey
) -> Message:
    """Revoke a key."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"API key {key_id} not found")
    session.delete(row)
    session.commit()
    return Message(detail=f"API key {key_id} revoked")
