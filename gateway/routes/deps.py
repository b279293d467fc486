"""What every route needs: the services of this replica and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header
from pydantic import BaseModel, ConfigDict, Field

from raychat.errors import Unauthorized

from ..account_service import AccountService
from ..chat_service import ChatService
from ..context import context

Id = Annotated[str, Field(min_length=1, max_length=128)]


def accounts() -> AccountService:
    return context().accounts


def chat() -> ChatService:
    return context().chat


def bearer(authorization: Annotated[str | None, Header()] = None) -> str:
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization must be 'Bearer <token>'")
    return accounts().authenticate(token.strip())


User = Annotated[str, Depends(bearer)]
Accounts = Annotated[AccountService, Depends(accounts)]
Chat = Annotated[ChatService, Depends(chat)]


class Body(BaseModel):
    """Request bodies ignore unknown fields: a forged sender_id or seq never reaches a handler."""
    model_config = ConfigDict(extra="ignore")
