"""Accounts, profiles and presence (PROTOCOL.md, "Accounts")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field

from raychat.errors import Invalid

from .. import captcha
from ..context import context
from .deps import Accounts, Body, ClientIp, Lim, User
from .responses import (AUTHED, WITH_BODY, WITH_INPUT, PresenceMap, Profile, PublicProfile, Registered,
                        TokenPair, errors)

router = APIRouter()


CaptchaToken = Annotated[str | None, Field(max_length=8192,
                                           description="a solved CAPTCHA; required when the server has one on")]


class RegisterBody(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)
    display_name: str | None = Field(default=None, max_length=256)
    captcha_token: CaptchaToken = None


class LoginBody(Body):
    username: str = Field(max_length=256)
    password: str = Field(max_length=1024)
    captcha_token: CaptchaToken = None


# Ids are printable ASCII. At this length even a fully percent-encoded URL stays under the 64 KiB
# request line the Serve proxy accepts; past that the proxy itself answers a bare-text 400.
UserIdList = Annotated[str, Query(max_length=20_000, pattern=r"^[!-~]*$",
                                  description="comma-separated user ids, at most 500")]


class RefreshBody(Body):
    refresh_token: str = Field(max_length=256, description="the refresh_token of the last pair; spent by this call")


class OidcBody(Body):
    id_token: str = Field(max_length=16_384, description="an ID token from a configured OpenID Connect issuer")
    nonce: str | None = Field(default=None, max_length=512,
                              description="the nonce sent in the authentication request; the ID token must carry it")


class ProfilePatch(Body):
    display_name: str | None = Field(default=None, max_length=256)


# Sign-in order: schema (422), captcha_token present (422), rate limits (429: cheap refusals come
# before the CAPTCHA provider and the password hash), CAPTCHA check (403), then the service.
@router.post("/v1/auth/register", status_code=201, response_model=Registered,
             responses=errors(403, 409, *WITH_BODY, 429, 503))
async def register(body: RegisterBody, svc: Accounts, lim: Lim, ip: ClientIp):
    verifier = context().captcha
    captcha.require_token(verifier, body.captcha_token)
    await lim.registration(ip)
    await captcha.check(verifier, body.captcha_token, ip)
    return await svc.register(body.username, body.password, body.display_name)


@router.post("/v1/auth/login", response_model=TokenPair, response_model_exclude_unset=True,
             responses=errors(401, 403, *WITH_BODY, 429, 503))
async def login(body: LoginBody, svc: Accounts, lim: Lim, ip: ClientIp):
    verifier = context().captcha
    captcha.require_token(verifier, body.captcha_token)
    async with lim.login_attempt(ip, body.username):     # only failed attempts stay counted
        await captcha.check(verifier, body.captcha_token, ip)
        return await svc.login(body.username, body.password)


@router.post("/v1/auth/refresh", response_model=TokenPair, responses=errors(401, *WITH_BODY, 503))
async def refresh(body: RefreshBody, svc: Accounts):
    """A new pair; the refresh token sent is spent. Sending a spent one again revokes its whole
    family (every token issued since that login), and answers 401."""
    return await svc.refresh(body.refresh_token)


@router.post("/v1/auth/logout", status_code=204, response_class=Response, responses=errors(*WITH_BODY, 503))
async def logout(body: RefreshBody, svc: Accounts):
    """Revoke the refresh token's family. Answers 204 whether or not the token was known."""
    await svc.logout(body.refresh_token)
    return Response(status_code=204)


@router.post("/v1/auth/oidc", response_model=TokenPair, responses=errors(401, *WITH_BODY, 503))
async def oidc_login(body: OidcBody, svc: Accounts):
    """Log in with an ID token; the first login of an (iss, sub) creates a user with no password."""
    return await svc.login_oidc(body.id_token, body.nonce)


@router.get("/v1/users/me", response_model=Profile, responses=errors(*AUTHED, 404))
async def me(uid: User, svc: Accounts):
    return await svc.profile(uid, private=True)


@router.patch("/v1/users/me", response_model=Profile, responses=errors(*AUTHED, 404, *WITH_BODY))
async def update_me(body: ProfilePatch, uid: User, svc: Accounts):
    """Change the fields given; a field left out (or null) stays as it is."""
    return await svc.update_profile(uid, body.display_name)


@router.get("/v1/users", response_model=PublicProfile, responses=errors(*AUTHED, 404, *WITH_INPUT))
async def find_user(uid: User, svc: Accounts,
                    username: str = Query(max_length=256, description="exact username; case and width are "
                                                                      "folded as at login")):
    """The user with this username (404 if none): how a client starts a conversation by name."""
    return await svc.profile_by_username(username)


@router.get("/v1/users/{user_id}", response_model=PublicProfile, responses=errors(*AUTHED, 404, *WITH_INPUT))
async def user_profile(user_id: str, uid: User, svc: Accounts):
    return await svc.profile(user_id)


@router.get("/v1/presence", response_model=PresenceMap, responses=errors(*AUTHED, *WITH_INPUT))
async def presence(uid: User, svc: Accounts, user_ids: UserIdList = ""):
    ids = [u for u in user_ids.split(",") if u]
    if len(ids) > 500:
        raise Invalid("user_ids: at most 500 per call")
    return await svc.presence_of(ids)
