"""Push devices (PROTOCOL.md, "Devices and keys"; the rules are in gateway/device_service.py)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from fastapi import APIRouter, Response
from pydantic import Field

from push.targets import APNS_TOKEN, FCM_TOKEN, MAX_URL_CHARS
from .deps import Body, Devices, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Timestamp, Wire, errors

router = APIRouter()


# One body shape per platform, so the OpenAPI document says what each token looks like; the
# service checks the same rules again (push/targets.py), and a webhook URL against the policy.
class FcmDevice(Body):
    platform: Literal["fcm"]
    token: str = Field(pattern=f"^{FCM_TOKEN.pattern}$", description="an FCM registration token")


class ApnsDevice(Body):
    platform: Literal["apns"]
    token: str = Field(pattern=f"^{APNS_TOKEN.pattern}$", description="an APNs device token, in hex")


class WebhookDevice(Body):
    platform: Literal["webhook"]
    token: str = Field(min_length=8, max_length=MAX_URL_CHARS, pattern="^https?://",
                       json_schema_extra={"format": "uri"},
                       description="the URL to POST to: https to a public host, or within the server's allowlist")


DeviceBody = Annotated[Union[FcmDevice, ApnsDevice, WebhookDevice], Field(discriminator="platform")]


class Registered(Wire):
    device_id: str


class DeviceEntry(Wire):
    device_id: str
    platform: Literal["fcm", "apns", "webhook"]
    token_hint: str = Field(description="the token's last characters, or a webhook's origin: never the token")
    created_at: Timestamp


class DeviceList(Wire):
    devices: list[DeviceEntry] = Field(description="oldest first")


@router.post("/v1/devices", status_code=201, response_model=Registered, responses=errors(*AUTHED, *WITH_BODY))
async def register_device(body: DeviceBody, uid: User, svc: Devices):
    """Register where your pushes go. Idempotent: the same platform and token answer the same device_id."""
    return await svc.register(uid, body.platform, body.token)


@router.get("/v1/devices", response_model=DeviceList, responses=errors(*AUTHED))
async def list_devices(uid: User, svc: Devices):
    return await svc.list(uid)


@router.delete("/v1/devices/{device_id}", status_code=204, response_class=Response,
               responses=errors(*AUTHED, 404, *WITH_INPUT))
async def remove_device(device_id: str, uid: User, svc: Devices):
    """Stop pushes to one of your devices; any other id is 404."""
    await svc.remove(uid, device_id)
    return Response(status_code=204)
