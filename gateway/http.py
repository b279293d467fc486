"""HTTP routes (PROTOCOL.md, "HTTP"). Thin: validate, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.events import event_to_wire
from raychat.errors import Invalid, Unauthorized, Unavailable

from .context import context
from .service import ChatService

router = APIRouter()

Id = Annotated[str, Field(min_length=1, max_length=128)]


def service(request: Request) -> ChatService:
    return context().service


def bearer(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    if not authorization:
        raise Unauthorized("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization must be 'Bearer <token>'")
    return service(request).authenticate(token.strip())


User = Annotated[str, Depends(bearer)]
Svc = Annotated[ChatService, Depends(service)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RegisterBody(_Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)
    display_name: str | None = Field(default=None, max_length=256)


class LoginBody(_Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class ProfilePatch(_Body):
    display_name: str | None = Field(default=None, max_length=256)


class CreateConversation(_Body):
    kind: Literal["direct", "group"]
    members: list[Id] = Field(max_length=10_000)
    title: str | None = Field(default=None, max_length=1024)


class SendBody(_Body):
    client_msg_id: Id
    body: str
    attachments: list[Id] = Field(default_factory=list, max_length=10)
    reply_to: Annotated[int, Field(ge=1)] | None = None


# ---- operations --------------------------------------------------------------------------
@router.get("/healthz")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request):
    ctx = context()
    try:
        await ctx.stores.ping()
        await ctx.presence.ping()
    except Exception:
        raise Unavailable("a store is unreachable") from None
    return {"status": "ready"}


# ---- accounts ----------------------------------------------------------------------------
@router.post("/v1/auth/register", status_code=201)
async def register(body: RegisterBody, svc: Svc):
    return await svc.register(body.username, body.password, body.display_name)


@router.post("/v1/auth/login")
async def login(body: LoginBody, svc: Svc):
    return await svc.login(body.username, body.password)


@router.get("/v1/users/me")
async def me(uid: User, svc: Svc):
    return await svc.profile(uid, private=True)


@router.get("/v1/users/{user_id}")
async def user_profile(user_id: str, uid: User, svc: Svc):
    return await svc.profile(user_id)


@router.get("/v1/presence")
async def presence(uid: User, svc: Svc, user_ids: Annotated[str, Query(max_length=100_000)] = ""):
    ids = [u for u in user_ids.split(",") if u]
    if len(ids) > 500:
        raise Invalid("user_ids: at most 500 per call")
    return await svc.presence_of(ids)


# ---- conversations -----------------------------------------------------------------------
@router.post("/v1/conversations", status_code=201)
async def create_conversation(body: CreateConversation, uid: User, svc: Svc):
    conv, created = await svc.create_conversation(uid, body.kind, body.members, body.title)
    return JSONResponse(conv, status_code=201 if created else 200)


@router.get("/v1/conversations")
async def list_conversations(uid: User, svc: Svc, cursor: str | None = Query(None, max_length=64),
                             limit: int = Query(50, ge=1, le=200)):
    return await svc.list_conversations(uid, cursor, limit)


@router.get("/v1/conversations/{cid}")
async def get_conversation(cid: str, uid: User, svc: Svc):
    return svc.conversation_wire(await svc.member_conversation(uid, cid))


# ---- messages ----------------------------------------------------------------------------
@router.post("/v1/conversations/{cid}/messages", status_code=201)
async def send_message(cid: str, body: SendBody, uid: User, svc: Svc):
    ev = await svc.send(uid, cid, body.client_msg_id, body.body, body.attachments, body.reply_to)
    return event_to_wire(ev)


@router.get("/v1/conversations/{cid}/events")
async def events(cid: str, uid: User, svc: Svc, after_seq: int = Query(0, ge=0),
                 limit: int = Query(100, ge=1, le=1000)):
    return await svc.events_after(uid, cid, after_seq, limit)


@router.get("/v1/conversations/{cid}/messages")
async def history(cid: str, uid: User, svc: Svc, before_seq: int | None = Query(None, ge=1),
                  limit: int = Query(50, ge=1, le=200)):
    return await svc.history(uid, cid, before_seq, limit)


def no_content() -> Response:
    return Response(status_code=204)
