"""What the HTTP adapters share: one POST that never raises, and reading Retry-After."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..ports import Outcome


async def post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response | Outcome:
    """The response, or ``Outcome.retry`` for a timeout or a connection that failed (the push
    may or may not have arrived; at-least-once means it is sent again)."""
    try:
        return await client.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        return Outcome.retry(f"timed out: {type(exc).__name__}")
    except (httpx.TransportError, OSError) as exc:
        return Outcome.retry(f"connection failed: {type(exc).__name__}: {exc}")


def retry_after_s(response: httpx.Response, now: float) -> float | None:
    """Retry-After as seconds from ``now`` (RFC 9110 §10.2.3: seconds, or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def transient(response: httpx.Response, now: float, what: str) -> Outcome | None:
    """``retry`` for the statuses every provider means as "not now" (429, 408, 5xx), else None."""
    if response.status_code in (408, 429) or response.status_code >= 500:
        return Outcome.retry(f"{what} answered {response.status_code}", retry_after_s(response, now))
    return None


def error_text(response: httpx.Response, limit: int = 300) -> str:
    return response.text[:limit].replace("\n", " ")
