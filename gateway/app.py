"""Builds the gateway's ASGI app and the per-replica context it runs on."""

from __future__ import annotations

import logging

from fastapi import FastAPI, WebSocket

from raychat.clock import SystemClock
from raychat.config import Settings

from . import http_errors, routes
from . import edge
from .account_service import AccountService
from .block_service import BlockService
from .captcha import SiteVerify
from .chat_service import ChatService
from .context import Context, context
from .hub import Hub
from .key_service import KeyService
from .limits import Limits
from .oidc import OidcVerifier
from .passwords import PasswordHasher
from .router import HostRouter
from .tokens import TokenIssuer
from .ws import Session

log = logging.getLogger(__name__)


def build_context(settings: Settings) -> Context:
    """Connect to the stores and hosts (starting the hosts if this is the first replica)."""
    from storage.mongo import MongoStores
    from storage.redis_limits import RedisLimits
    from storage.redis_store import RedisPresence

    if not settings.mongodb_uri or not settings.redis_url or not settings.jwt_secret:
        raise ValueError("the gateway needs RAYCHAT_MONGODB_URI, RAYCHAT_REDIS_URL and RAYCHAT_JWT_SECRET "
                         "(`raychat up` fills them in for the embedded default)")
    clock = SystemClock()
    stores = MongoStores(settings.mongodb_uri, settings.mongodb_db, write_concern=settings.write_concern,
                         journal=settings.write_journal, timeout_ms=settings.store_timeout_ms)
    presence = RedisPresence(settings.redis_url, timeout_s=settings.store_timeout_ms / 1000)
    router = HostRouter(settings)
    router.wait_ready()
    tokens = TokenIssuer(settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience,
                         settings.access_token_ttl_s, clock, extra_keys=settings.jwt_keys,
                         signing_kid=settings.jwt_signing_kid)
    oidc = (OidcVerifier(settings.oidc_issuers, clock, ttl_s=settings.oidc_jwks_ttl_s,
                         refetch_s=settings.oidc_jwks_refetch_s) if settings.oidc_issuers else None)
    accounts = AccountService(settings, stores, presence, tokens, PasswordHasher(), clock, oidc=oidc)
    blocks = BlockService(stores, clock)
    chat = ChatService(settings, stores, router, clock, blocks=blocks)
    limits = Limits(RedisLimits(settings.redis_url, timeout_s=settings.store_timeout_ms / 1000), settings, clock)
    captcha = (SiteVerify(settings.captcha_verify_url, settings.captcha_secret)
               if settings.captcha_verify_url else None)
    return Context(settings, stores, presence, router, Hub(router), accounts, chat, limits=limits, captcha=captcha,
                   blocks=blocks, keys=KeyService(stores, clock))


def create_app() -> FastAPI:
    app = FastAPI(title="raychat", version="1", docs_url=None, redoc_url=None)
    http_errors.install(app)
    routes.include_all(app)

    @app.websocket("/v1/ws")
    async def websocket(ws: WebSocket):
        ctx = context()
        origin = edge.header(ws.scope, b"origin")
        if not edge.origin_allowed(origin, edge.header(ws.scope, b"host"), ctx.settings.allowed_origin_set()):
            # Closing before accept answers the handshake with HTTP 403: a page on another site
            # never gets a socket that rides on its visitor's credentials.
            log.warning("refused websocket from ip %s: origin %r not allowed",
                        edge.client_ip(ws.scope, ctx.settings.trusted_proxy_networks()), origin[:200])
            await ws.close(code=1008)
            return
        ctx.hub.start()
        ctx.limits.start()
        await Session(ws, ctx).run()

    app.add_middleware(http_errors.BodyLimit, max_bytes=lambda: context().settings.max_http_body_bytes)
    return app
