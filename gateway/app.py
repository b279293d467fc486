"""Builds the gateway's ASGI app and the per-replica context it runs on."""

from __future__ import annotations

import logging

from fastapi import FastAPI, WebSocket

from raychat import logs
from raychat.clock import SystemClock
from raychat.config import Settings
from storage.disk_blobs import UPLOAD_PATH

from . import http_errors, routes
from . import edge, web
from .account_service import AccountService
from .block_service import BlockService
from .captcha import SiteVerify
from .chat_service import ChatService
from .device_service import DeviceService
from .context import Context, context
from .hub import Hub
from .key_service import KeyService
from .limits import Limits
from .media_service import MediaService, blob_store_for
from .media_upload import FORM_OVERHEAD_BYTES
from .oidc import OidcVerifier
from .passwords import PasswordHasher
from .metrics import Scraper
from .request_ids import RequestContext
from .router import HostRouter
from .search_service import SearchService
from .tokens import TokenIssuer
from .ws import Session

log = logging.getLogger(__name__)


def build_context(settings: Settings) -> Context:
    """Connect to the stores and hosts (starting the hosts if this is the first replica)."""
    from storage.mongo import MongoStores
    from storage.redis_limits import RedisLimits
    from push.tally import OutcomeTally
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
    blobs, disk = blob_store_for(settings, clock)      # S3 when RAYCHAT_S3_ENDPOINT is set, else data_dir/media
    media = MediaService(settings, stores, blobs, clock, disk=disk)
    chat = ChatService(settings, stores, router, clock, blocks=blocks, media=media)
    limits = Limits(RedisLimits(settings.redis_url, timeout_s=settings.store_timeout_ms / 1000), settings, clock)
    captcha = (SiteVerify(settings.captcha_verify_url, settings.captcha_secret)
               if settings.captcha_verify_url else None)
    hub = Hub(router)
    return Context(settings, stores, presence, router, hub, accounts, chat, limits=limits, captcha=captcha,
                   blocks=blocks, keys=KeyService(stores, clock), media=media,
                   devices=DeviceService(settings, stores, clock), search=SearchService(stores, chat),
                   metrics=Scraper(router, hub, OutcomeTally(settings.redis_url,
                                                             timeout_s=settings.store_timeout_ms / 1000)))


def create_app() -> FastAPI:
    app = FastAPI(title="raychat", version="1", docs_url=None, redoc_url=None)
    http_errors.install(app)
    routes.include_all(app)
    web.install(app, lambda: context().settings)     # the web client at / (gateway/static/)

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
        logs.detached(ctx.hub.start)         # idempotent; started once, by whichever socket is first
        logs.detached(ctx.limits.start)
        await Session(ws, ctx).run()

    app.add_middleware(http_errors.BodyLimit, max_bytes=lambda: context().settings.max_http_body_bytes,
                       streamed={UPLOAD_PATH: lambda: context().settings.media_max_bytes + FORM_OVERHEAD_BYTES})
    # Added last, so outermost: a refusal by the body limit is logged with the request id too.
    app.add_middleware(RequestContext)
    return app
