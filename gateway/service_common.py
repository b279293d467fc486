"""Helpers every service shares: store error translation and id minting."""

from __future__ import annotations

import contextlib
import secrets
from typing import AsyncIterator

from raychat.errors import Conflict, Unavailable
from storage.errors import DuplicateKey, StoreError


@contextlib.asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Storage errors become the wire's: a unique index is ``conflict``, an outage ``unavailable``."""
    try:
        yield
    except DuplicateKey as exc:
        raise Conflict(f"{exc.key or 'key'}: already exists") from exc
    except StoreError as exc:
        raise Unavailable("store unavailable, retry later", retry_after_ms=1000) from exc


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
