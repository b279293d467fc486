"""HTTP routes (PROTOCOL.md, "HTTP"), one module per domain. Thin: validate, call a service, shape the answer."""

from fastapi import FastAPI

from . import accounts, conversations, messages, ops

ROUTERS = (ops.router, accounts.router, conversations.router, messages.router)


def include_all(app: FastAPI) -> None:
    for r in ROUTERS:
        app.include_router(r)
