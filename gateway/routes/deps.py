"""What every route needs: the services of this replica and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from raychat import logs
from raychat.errors import Unauthorized

from ..account_service import AccountService
from ..block_service import BlockService
from .. import edge
from ..chat_service import ChatService
from ..context import context
from ..device_service import DeviceService
from ..key_service import KeyService
from ..limits import Limits
from ..search_service import SearchService
from ..tokens import Access

Id = Annotated[str, Field(min_length=1, max_length=128)]


def accounts() -> AccountService:
    return context().accounts


def chat() -> ChatService:
    return context().chat


# Declares the bearer scheme in the OpenAPI document (and marks each route that uses it); the
# header itself is parsed in bearer() so that every bad Authorization gets our own 401 body.
_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="an access_token from POST /v1/auth/login")


def bearer(request: Request,
           _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_scheme)]) -> str:
    user_id = accounts().authenticate(_token(request))
    logs.bind(user_id=user_id)      # every later log line of this request names its caller
    return user_id


def bearer_access(request: Request,
                  _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_scheme)]) -> Access:
    """As ``bearer``, with the token's expiry: for a response that lasts (the event stream)."""
    access = accounts().access(_token(request))
    logs.bind(user_id=access.user_id)
    return access


def _token(request: Request) -> str:
    authorization = request.headers.get("authorization")
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization must be 'Bearer <token>'")
    return token.strip()


User = Annotated[str, Depends(bearer)]
BearerAccess = Annotated[Access, Depends(bearer_access)]
Accounts = Annotated[AccountService, Depends(accounts)]
Chat = Annotated[ChatService, Depends(chat)]


def blocks() -> BlockService:
    return context().blocks


def keys() -> KeyService:
    return context().keys


Blocks = Annotated[BlockService, Depends(blocks)]
Keys = Annotated[KeyService, Depends(keys)]


def devices() -> DeviceService:
    return context().devices


Devices = Annotated[DeviceService, Depends(devices)]


def search() -> SearchService:
    return context().search


Search = Annotated[SearchService, Depends(search)]


def limits() -> Limits:
    return context().limits


def client_ip(request: Request) -> str:
    """The caller's address (gateway/edge.py: X-Forwarded-For only from RAYCHAT_TRUSTED_PROXIES)."""
    return edge.client_ip(request.scope, context().settings.trusted_proxy_networks())


Lim = Annotated[Limits, Depends(limits)]
ClientIp = Annotated[str, Depends(client_ip)]


class Body(BaseModel):
    """Request bodies ignore unknown fields: a forged sender_id or seq never reaches a handler."""
    model_config = ConfigDict(extra="ignore")


async def log_context(request: Request) -> None:
    """Every route: a conversation named in the path is on every log line of the request."""
    cid = request.path_params.get("cid")
    if cid:
        logs.bind(conversation_id=cid)
