"""HTTP routes (PROTOCOL.md, "HTTP"), one module per domain. Thin: validate, call a service, shape the answer."""

from fastapi import Depends, FastAPI

from . import accounts, blocks, changes, conversations, devices, keys, media, messages, ops, search, stream
from .deps import log_context
from .responses import errors

ROUTERS = (ops.router, accounts.router, conversations.router, messages.router, changes.router,
           blocks.router, keys.router, stream.router, media.router, devices.router, search.router)


def include_all(app: FastAPI) -> None:
    for r in ROUTERS:
        # Any route can hit a bug; http_errors answers it with the Error body, so say so.
        app.include_router(r, responses=errors(500), dependencies=[Depends(log_context)])
