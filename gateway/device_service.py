"""Push devices (PROTOCOL.md, "Devices and keys"; docs/protocol.md, "Push notifications").

A device is where a user's pushes go: an FCM registration token, an APNs device token, or a
webhook URL. Registering is idempotent per (user, platform, token); a token registered by
another user moves to the caller (the phone changed hands). Listings mask tokens: a device
token is a credential to push to that phone.
"""

from __future__ import annotations

from typing import Any

from actors.events import utc
from push.targets import WebhookPolicy, check_token, mask
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Invalid, NotFound

from .service_common import new_id, store_errors


class DeviceService:
    def __init__(self, settings: Settings, stores: Any, clock: Clock):
        self.stores = stores
        self.clock = clock
        self.max_devices = settings.push_max_devices
        self.webhooks = WebhookPolicy(settings.push_webhook_allowed)

    async def register(self, user_id: str, platform: str, token: str) -> dict[str, str]:
        try:
            token = check_token(platform, token, self.webhooks)
        except ValueError as exc:
            raise Invalid(f"token: {exc}") from None
        device = {"device_id": new_id("d"), "user_id": user_id, "platform": platform, "token": token,
                  "created_at": utc(self.clock.now())}
        async with store_errors():
            stored = await self.stores.devices.register(device, self.max_devices)
        return {"device_id": stored["device_id"]}

    async def remove(self, user_id: str, device_id: str) -> None:
        """Only one's own devices; any other id (someone else's, or none) is not_found."""
        async with store_errors():
            removed = await self.stores.devices.remove(device_id, user_id)
        if not removed:
            raise NotFound("no such device")

    async def list(self, user_id: str) -> dict[str, Any]:
        async with store_errors():
            devices = await self.stores.devices.list_for_user(user_id)
        return {"devices": [{"device_id": d["device_id"], "platform": d["platform"],
                             "token_hint": mask(d["platform"], d["token"]), "created_at": iso(d["created_at"])}
                            for d in devices]}
