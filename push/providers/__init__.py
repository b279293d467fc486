"""One adapter per push service, each behind push.ports.PushProvider, all on httpx.

httpx because one client library covers the three: connection pooling, timeouts, and HTTP/2
(with the ``h2`` extra) which APNs requires. ``build_providers`` makes those whose credentials
are configured; a platform without one is off.
"""

from __future__ import annotations

import logging

from raychat.clock import Clock
from raychat.config import ConfigError, Settings

from ..ports import PushProvider
from ..targets import WebhookPolicy

log = logging.getLogger(__name__)


def build_providers(settings: Settings, clock: Clock) -> dict[str, PushProvider]:
    """The providers this deployment has credentials for, by platform. A key file that cannot
    be read or parsed stops the worker with a sentence naming its variable."""
    from .apns import ApnsProvider
    from .fcm import FcmProvider
    from .webhook import WebhookProvider

    s, out = settings, {}
    timeout = s.push_send_timeout_s
    if s.push_fcm_service_account is not None:
        try:
            out["fcm"] = FcmProvider.from_file(s.push_fcm_service_account, s.push_fcm_url, clock, timeout)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"raychat: bad configuration: RAYCHAT_PUSH_FCM_SERVICE_ACCOUNT: {exc}") from None
    if s.push_apns_key_file is not None:
        try:
            out["apns"] = ApnsProvider.from_file(
                s.push_apns_key_file, key_id=s.push_apns_key_id, team_id=s.push_apns_team_id,
                topic=s.push_apns_topic, base_url=s.push_apns_url or ApnsProvider.default_url(s.push_apns_sandbox),
                clock=clock, timeout_s=timeout)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"raychat: bad configuration: RAYCHAT_PUSH_APNS_KEY_FILE: {exc}") from None
    if s.push_webhook_secret:
        out["webhook"] = WebhookProvider(s.push_webhook_secret, WebhookPolicy(s.push_webhook_allowed), clock,
                                         timeout)
    log.info("push providers on: %s", ", ".join(sorted(out)) or "none")
    return out
