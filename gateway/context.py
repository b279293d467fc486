"""The per-replica context the routes run on: settings, stores, the host router, the hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raychat.config import Settings
from raychat.errors import Unavailable

from .hub import Hub
from .router import HostRouter
from .account_service import AccountService
from .block_service import BlockService
from .captcha import CaptchaVerifier
from .chat_service import ChatService
from .device_service import DeviceService
from .key_service import KeyService
from .limits import Limits
from .media_service import MediaService
from .search_service import SearchService
from .metrics import Scraper


@dataclass
class Context:
    settings: Settings
    stores: Any
    presence: Any
    router: HostRouter
    hub: Hub
    accounts: AccountService
    chat: ChatService
    limits: Limits | None = None            # None only in tests that build a bare context
    captcha: CaptchaVerifier | None = None  # None: CAPTCHA off (RAYCHAT_CAPTCHA_VERIFY_URL unset)
    blocks: BlockService | None = None      # None only in tests that build a bare context
    keys: KeyService | None = None          # None only in tests that build a bare context
    devices: DeviceService | None = None    # None only in tests that build a bare context
    media: MediaService | None = None       # None only in tests that build a bare context
    metrics: Scraper | None = None          # GET /metrics; None only in tests that build a bare context
    search: SearchService | None = None     # None only in tests that build a bare context


_current: Context | None = None


def set_context(ctx: Context) -> None:
    """One context per replica process. Serve rebuilds the ingress app it is given, so the
    context cannot ride on ``app.state``: routes find it here."""
    global _current
    _current = ctx


def context() -> Context:
    if _current is None:
        raise Unavailable("gateway is starting")
    return _current
