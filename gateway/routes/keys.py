"""The key directory for end-to-end encryption (PROTOCOL.md, "Devices and keys"; docs/protocol.md, "Changes")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt

from ..key_service import BASE64, MAX_KEY_CHARS, MAX_KEY_ID, MAX_PREKEYS_PER_UPLOAD
from .deps import Body, Keys, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Wire, errors

router = APIRouter()

PublicKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS, pattern=BASE64,
                                 description="base64 (standard or URL-safe), opaque to the server")]
KeyId = Annotated[StrictInt, Field(ge=0, le=MAX_KEY_ID)]


class OneTimePrekey(BaseModel):
    key_id: KeyId
    public_key: PublicKey


class KeyUpload(Body):
    identity_key: PublicKey
    signed_prekey: PublicKey = Field(description="the client's signed prekey record (id, key, signature), "
                                                 "base64; replaced by every upload")
    one_time_prekeys: list[OneTimePrekey] = Field(
        default_factory=list, max_length=MAX_PREKEYS_PER_UPLOAD,
        description="appended to the pool; a key_id uploaded before under this identity key is skipped")


class PrekeyCount(Wire):
    count: int = Field(ge=0, description="one-time prekeys left unclaimed")


class ClaimedPrekey(Wire):
    key_id: int
    public_key: str


class KeyBundle(Wire):
    user_id: str
    identity_key: str
    signed_prekey: str
    one_time_prekey: ClaimedPrekey | None = Field(description="handed out to this caller only; null when "
                                                              "none is left")


@router.put("/v1/keys", response_model=PrekeyCount, responses=errors(*AUTHED, *WITH_BODY))
async def upload_keys(body: KeyUpload, uid: User, svc: Keys):
    return await svc.upload(uid, body.identity_key, body.signed_prekey,
                            [p.model_dump() for p in body.one_time_prekeys])


@router.get("/v1/keys/me/count", response_model=PrekeyCount, responses=errors(*AUTHED))
async def prekey_count(uid: User, svc: Keys):
    return await svc.count(uid)


@router.get("/v1/keys/{user_id}", response_model=KeyBundle, responses=errors(*AUTHED, 404, *WITH_INPUT))
async def claim_bundle(user_id: str, uid: User, svc: Keys):
    return await svc.claim_bundle(user_id)
