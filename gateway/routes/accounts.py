"""Accounts, profiles and presence (PROTOCOL.md, "Accounts")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from raychat.errors import Invalid

from .deps import Accounts, Body, User

router = APIRouter()


class RegisterBody(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)
    display_name: str | None = Field(default=None, max_length=256)


class LoginBody(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class ProfilePatch(Body):
    display_name: str | None = Field(default=None, max_length=256)


@router.post("/v1/auth/register", status_code=201)
async def register(body: RegisterBody, svc: Accounts):
    return await svc.register(body.username, body.password, body.display_name)


@router.post("/v1/auth/login")
async def login(body: LoginBody, svc: Accounts):
    return await svc.login(body.username, body.password)


@router.get("/v1/users/me")
async def me(uid: User, svc: Accounts):
    return await svc.profile(uid, private=True)


@router.get("/v1/users/{user_id}")
async def user_profile(user_id: str, uid: User, svc: Accounts):
    return await svc.profile(user_id)


@router.get("/v1/presence")
async def presence(uid: User, svc: Accounts, user_ids: Annotated[str, Query(max_length=100_000)] = ""):
    ids = [u for u in user_ids.split(",") if u]
    if len(ids) > 500:
        raise Invalid("user_ids: at most 500 per call")
    return await svc.presence_of(ids)
