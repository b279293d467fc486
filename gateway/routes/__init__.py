"""HTTP routes (PROTOCOL.md, "HTTP"), one module per domain. Thin: validate, call a service, shape the answer."""

from fastapi import FastAPI

from . import accounts, blocks, changes, conversations, keys, messages, ops, stream
from .responses import errors

ROUTERS = (ops.router, accounts.router, conversations.router, messages.router, changes.router,
           blocks.router, keys.router, stream.router)


def include_all(app: FastAPI) -> None:
    for r in ROUTERS:
        # Any route can hit a bug; http_errors answers it with the Error body, so say so.
        app.include_router(r, responses=errors(500))
