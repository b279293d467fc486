"""raychat's Python SDK: an asyncio client for the HTTP routes and the WebSocket of docs/protocol.md.

    async with Client("http://127.0.0.1:8000") as client:
        await client.login("alice", "correct horse")
        cid = (await client.create_group("friends", [bob_id]))["conversation_id"]
        async with client.connect(since={cid: 0}) as conn:
            ack = await conn.send(cid, "hi")             # retried with the same client_msg_id until acked
            async for event in conn.events():            # in seq order per conversation, no gap, no repeat
                print(event["seq"], event.get("body"))

One module on purpose: it imports only the standard library, httpx and websockets (never Ray nor
the server's packages), so an application can copy this file alone.

Exceptions::

    Exception
     ├── ApiError        the server refused: ``code`` (docs/protocol.md, "Errors"), ``status``,
     │                   ``message``, ``retry_after_ms``; from an HTTP error body or a WebSocket error frame
     └── SessionClosed   a realtime connection ended for good: closed by the application, or closed
                         by the server in a way a reconnect cannot fix (``code``, ``reason``)

A request that fails on the network raises ``httpx.TransportError`` untouched: whether the server
applied it is unknown, and only the caller knows whether retrying it is safe.

Realtime (``Client.connect``): one WebSocket, reopened after any cut with exponential backoff and
jitter, resumed with ``hello.since`` from the last seq delivered per conversation. ``events()``
yields conversation events in order without gaps or repeats (``EventOrder``); ``signals()``
yields the ephemeral frames (``typing``, ``presence``, ``receipt``) and error frames that answer
nothing this connection waits for. ``send`` retries with one ``client_msg_id`` until acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote, urljoin

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

log = logging.getLogger("raychat.client")

__all__ = ["Ack", "ApiError", "Backoff", "Client", "Connection", "EventOrder", "Gap", "SessionClosed",
           "close_action"]

# docs/protocol.md, "Errors": the status each code is answered with over HTTP. A WebSocket error
# frame carries no status; ApiError gets this one, so callers can treat both the same way.
STATUS_OF = {"invalid": 422, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
             "too_large": 413, "unsupported_media_type": 415, "rate_limited": 429, "unavailable": 503,
             "internal": 500}
_CODE_OF = {400: "invalid", **{status: code for code, status in STATUS_OF.items()}}

# Send errors worth another try with the same client_msg_id (sends are idempotent): the server
# accepted nothing (unavailable, rate_limited), or a host failed mid-call (internal, which the
# gateway answers while chat hosts restart). Everything else is the request's own fault.
RETRYABLE = frozenset({"unavailable", "rate_limited", "internal"})
MAX_INTERNAL_RETRIES = 5        # "internal" is also what a real bug looks like: do not loop on one
MAX_INFLIGHT_SENDS = 256        # the server's limit of unacknowledged sends per socket
MAX_HELLO_SINCE = 1000          # the server's limit of hello.since entries; the rest go as sync frames
_PAGE = 500                     # events per request when filling a gap over HTTP


class ApiError(Exception):
    """The server's refusal, as docs/protocol.md's error body: ``{code, message, retry_after_ms?}``."""

    def __init__(self, code: str, status: int | None, message: str = "", retry_after_ms: int | None = None):
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.retry_after_ms = retry_after_ms

    @classmethod
    def from_response(cls, r: httpx.Response) -> "ApiError":
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            # Not our error body (a proxy's page, say): the status still says what kind of failure.
            body = {"code": _CODE_OF.get(r.status_code, "internal" if r.status_code >= 500 else "invalid"),
                    "message": r.text[:200]}
        retry = body.get("retry_after_ms")
        if retry is None and r.headers.get("retry-after", "").isdigit():
            retry = int(r.headers["retry-after"]) * 1000
        return cls(body["code"], r.status_code, str(body.get("message", "")), retry)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> "ApiError":
        code = str(frame.get("code", "internal"))
        return cls(code, STATUS_OF.get(code), str(frame.get("message", "")), frame.get("retry_after_ms"))


class SessionClosed(Exception):
    """The realtime connection is over and will not reconnect."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"connection closed ({code}): {reason}" if code else f"connection closed: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Ack:
    """The server stored the message: its ``seq`` in the conversation (the same for every retry)."""
    conversation_id: str
    client_msg_id: str
    seq: int
    created_at: str


# ---- backoff and close codes (pure) ----------------------------------------------------------------

@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    ``min(max_s, base_s * factor**(n-1))``. Half is fixed so a crowd of clients cut at once by a
    redeploy never retries in a tight loop; half is random so they do not come back in step."""
    base_s: float = 0.25
    factor: float = 2.0
    max_s: float = 30.0
    stable_s: float = 10.0      # a connection that lived this long starts the count again

    def delay(self, attempt: int, rng: random.Random) -> float:
        step = min(self.max_s, self.base_s * self.factor ** max(0, attempt - 1))
        return step / 2 + rng.uniform(0, step / 2)


def close_action(code: int, reason: str = "", last_error: str | None = None) -> str:
    """What a client does when the server ends its socket with ``code``: ``"reconnect"`` (and resume),
    ``"refresh"`` (get a new access token, then reconnect) or ``"fatal"`` (stop and report).

    ``last_error`` is the code of the error frame without ``ref`` that came just before the close:
    1008 follows ``unauthorized`` when the token expired or was refused, and ``rate_limited`` when
    the user has too many sockets; any other 1008 (repeated invalid frames) is this client's bug,
    as are 1002, 1003, 1007, 1009 and 1010, and reconnecting would only repeat it. Everything else
    (1000/1001 at shutdown, 1006 cut, 1011 server error, 1012 restart, 1013 overload) reconnects.
    """
    if code == 1008:
        if last_error == "unauthorized" or reason.startswith("unauthorized"):
            return "refresh"
        if last_error == "rate_limited":
            return "reconnect"
        return "fatal"
    if code in (1002, 1003, 1007, 1009, 1010):
        return "fatal"
    return "reconnect"


# ---- ordering, dedupe and gaps (pure) ---------------------------------------------------------------

@dataclass(frozen=True)
class Gap:
    """Events ``(after_seq, upto_seq]`` of a conversation are missing; later ones are held back."""
    conversation_id: str
    after_seq: int
    upto_seq: int


class EventOrder:
    """Turns conversation events as they arrive (live, replayed after a resume, repeated by a
    ``sync``) into what an application wants: per conversation, each seq once, in order, no gap.

    ``last_seq[cid]`` is the last seq handed out. An event at or below it is a repeat and dropped.
    One above ``last + 1`` is held back and a ``Gap`` is returned (once per gap): the caller fetches
    the missing events and passes them to ``filled``. A conversation seen for the first time starts
    at its first event, unless ``track`` set where to start. The user's own ``member_removed`` ends
    the conversation's tracking: nothing more comes from it, and resuming it would be refused.
    """

    def __init__(self, last_seq: dict[str, int] | None = None, user_id: str | None = None):
        self.last_seq: dict[str, int] = last_seq if last_seq is not None else {}
        self.user_id = user_id
        self._held: dict[str, dict[int, dict[str, Any]]] = {}
        self._filling: set[str] = set()
        self.repeats = 0            # events dropped as already handed out

    def since(self) -> dict[str, int]:
        """What ``hello.since`` sends: the last seq handed out per conversation."""
        return dict(self.last_seq)

    def track(self, cid: str, after_seq: int) -> tuple[list[dict[str, Any]], Gap | None]:
        """Follow ``cid`` from ``after_seq`` on (a cursor only moves forward); returns what
        ``accept`` does, for events that were held back."""
        if after_seq > self.last_seq.get(cid, -1):
            self.last_seq[cid] = after_seq
        return self._drain(cid)

    def forget(self, cid: str) -> None:
        self.last_seq.pop(cid, None)
        self._held.pop(cid, None)
        self._filling.discard(cid)

    def accept(self, event: dict[str, Any]) -> tuple[list[dict[str, Any]], Gap | None]:
        """One event in; the events now ready (in order), and a gap to fill if one just appeared."""
        cid, seq = event["conversation_id"], event["seq"]
        last = self.last_seq.get(cid)
        if last is None:
            last = self.last_seq[cid] = seq - 1
        if seq <= last or seq in self._held.get(cid, ()):
            self.repeats += 1
            return [], None
        self._held.setdefault(cid, {})[seq] = event
        return self._drain(cid)

    def filled(self, cid: str, events: Iterable[dict[str, Any]],
               upto_seq: int) -> tuple[list[dict[str, Any]], Gap | None]:
        """The store's events of a gap, complete through ``upto_seq``. A seq the store did not give
        is not for this user (from while they were not a member): the cursor moves past it."""
        self._filling.discard(cid)
        if cid not in self.last_seq:        # forgotten meanwhile
            return [], None
        held = self._held.setdefault(cid, {})
        for e in events:
            if self.last_seq[cid] < e["seq"] <= upto_seq:
                held.setdefault(e["seq"], e)
        ready = []
        for seq in sorted(s for s in held if s <= upto_seq):
            e = held.pop(seq)
            if seq > self.last_seq[cid]:
                ready.append(e)
                if self._removes_me(e):
                    self.forget(cid)
                    return ready, None
        self.last_seq[cid] = max(self.last_seq[cid], upto_seq)
        more, gap = self._drain(cid)
        return ready + more, gap

    def fill_failed(self, cid: str) -> None:
        """The fill was abandoned; the next event of ``cid`` asks again."""
        self._filling.discard(cid)

    def _removes_me(self, event: dict[str, Any]) -> bool:
        return event.get("kind") == "member_removed" and self.user_id in (event.get("user_ids") or ())

    def _drain(self, cid: str) -> tuple[list[dict[str, Any]], Gap | None]:
        held = self._held.get(cid)
        if not held or cid not in self.last_seq:
            return [], None
        last = self.last_seq[cid]
        for seq in [s for s in held if s <= last]:
            del held[seq]
        ready = []
        while last + 1 in held:
            last += 1
            ev = held.pop(last)
            ready.append(ev)
            if self._removes_me(ev):
                self.forget(cid)
                return ready, None
        self.last_seq[cid] = last
        if not held:
            del self._held[cid]
            return ready, None
        if cid not in self._filling:
            self._filling.add(cid)
            return ready, Gap(cid, last, min(held) - 1)
        return ready, None


# ---- the client: accounts, tokens and HTTP ----------------------------------------------------------

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Client:
    """Accounts, tokens and the HTTP routes; ``connect()`` opens the realtime connection.

    Tokens are refreshed before the access token expires (``refresh_margin_s`` ahead, at most half
    its life) and once on a 401. One refresh at a time: the server counts two refreshes with one
    refresh token as a theft and revokes the whole login. So one login belongs to one Client.
    """

    def __init__(self, base_url: str, *, ws_url: str | None = None, http: httpx.AsyncClient | None = None,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep, rng: random.Random | None = None,
                 backoff: Backoff = Backoff(), ack_timeout_s: float = 10.0, refresh_margin_s: float = 60.0,
                 timeout_s: float = 30.0, max_frame_bytes: int = 64 * 1024):
        self.base_url = base_url.rstrip("/")
        if ws_url is None:
            scheme, _, rest = self.base_url.partition("://")
            ws_url = {"https": "wss", "http": "ws"}.get(scheme, scheme) + "://" + rest
        self.ws_url = ws_url.rstrip("/") + ("" if ws_url.rstrip("/").endswith("/v1/ws") else "/v1/ws")
        self._own_http = http is None
        self.http = http if http is not None else httpx.AsyncClient(timeout=timeout_s)
        self.clock, self.sleep = clock, sleep
        self.rng = rng or random.Random()
        self.backoff = backoff
        self.ack_timeout_s = ack_timeout_s
        self.refresh_margin_s = refresh_margin_s
        self.max_frame_bytes = max_frame_bytes      # the server's default RAYCHAT_MAX_FRAME_BYTES
        self.user_id: str | None = None
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.expires_at = 0.0               # by self.clock
        self._refresh_at = 0.0
        self._refresh_lock = asyncio.Lock()
        self._token_listeners: set[Callable[[str], None]] = set()
        self.last_seq: dict[str, int] = {}  # shared by this client's connections, so a new one resumes
        self.refreshes = 0

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # ---- accounts and tokens --------------------------------------------------------------------
    async def register(self, username: str, password: str, *, display_name: str | None = None,
                       captcha_token: str | None = None) -> dict[str, Any]:
        """A new account (not logged in): ``{user_id, username}``. Taken → ApiError ``conflict``."""
        body: dict[str, Any] = {"username": username, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        if captcha_token is not None:
            body["captcha_token"] = captcha_token
        return await self.request("POST", "/v1/auth/register", json=body, auth=False)

    async def login(self, username: str, password: str, *, captcha_token: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password}
        if captcha_token is not None:
            body["captcha_token"] = captcha_token
        pair = await self.request("POST", "/v1/auth/login", json=body, auth=False)
        self.set_tokens(pair["access_token"], pair["refresh_token"], pair["expires_in"], pair["user_id"])
        return pair

    def set_tokens(self, access_token: str, refresh_token: str | None, expires_in: float,
                   user_id: str | None = None) -> None:
        """Use this token pair (from a login, or restored from where an app saved it)."""
        now = self.clock()
        self.access_token, self.refresh_token = access_token, refresh_token
        self.expires_at = now + expires_in
        self._refresh_at = self.expires_at - min(self.refresh_margin_s, expires_in / 2)
        if user_id is not None:
            self.user_id = user_id
        for listener in list(self._token_listeners):
            listener(access_token)

    async def token(self) -> str:
        """An access token good for a while: refreshed first if it is near its expiry."""
        token = self.access_token
        if token is None:
            raise ApiError("unauthorized", 401, "not logged in")
        if self.clock() >= self._refresh_at and self.refresh_token:
            await self._refresh(stale=token)
        return self.access_token  # type: ignore[return-value]

    async def refresh(self) -> None:
        """Spend the refresh token for a new pair now."""
        await self._refresh(stale=self.access_token)

    async def _refresh(self, stale: str | None) -> None:
        async with self._refresh_lock:
            if self.access_token != stale:
                return      # another task refreshed while this one waited: that token is the new one
            if not self.refresh_token:
                raise ApiError("unauthorized", 401, "no refresh token: log in again")
            # If this request's answer is lost, the refresh token may be spent without us knowing;
            # sending it again would revoke the login (reuse detection), so it is never retried here.
            r = await self.http.post(self.base_url + "/v1/auth/refresh", json={"refresh_token": self.refresh_token})
            if r.status_code != 200:
                err = ApiError.from_response(r)
                if err.code == "unauthorized":
                    self.access_token = self.refresh_token = None
                raise err
            pair = r.json()
            self.refreshes += 1
            self.set_tokens(pair["access_token"], pair["refresh_token"], pair["expires_in"], pair["user_id"])

    async def logout(self) -> None:
        """Revoke this login's refresh tokens; the access token lives until it expires."""
        if self.refresh_token:
            await self.request("POST", "/v1/auth/logout", json={"refresh_token": self.refresh_token}, auth=False)
        self.access_token = self.refresh_token = None

    # ---- HTTP -----------------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      auth: bool = True) -> Any:
        """One route: the JSON answer (None for 204). An error answer raises ApiError; a 401 on an
        authenticated route refreshes the tokens once and tries again."""
        r = await self._send(method, path, json=json, params=params, auth=auth)
        if r.status_code >= 400:
            raise ApiError.from_response(r)
        return None if r.status_code == 204 or not r.content else r.json()

    async def _send(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                    auth: bool = True) -> httpx.Response:
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        for attempt in (1, 2):
            headers = {}
            token = None
            if auth:
                token = await self.token()
                headers["Authorization"] = f"Bearer {token}"
            r = await self.http.request(method, self.base_url + path, json=json, params=params, headers=headers)
            if r.status_code == 401 and auth and attempt == 1 and self.refresh_token:
                await self._refresh(stale=token)
                continue
            return r
        return r

    async def me(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/users/me")

    async def update_me(self, *, display_name: str | None = None) -> dict[str, Any]:
        return await self.request("PATCH", "/v1/users/me", json={"display_name": display_name})

    async def user(self, user_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/users/{_q(user_id)}")

    async def user_by_name(self, username: str) -> dict[str, Any]:
        """The public profile of the user with this username (folded as at login); ApiError
        ``not_found`` if there is none. How a client starts a conversation by name."""
        return await self.request("GET", "/v1/users", params={"username": username})

    async def presence(self, user_ids: Iterable[str]) -> dict[str, Any]:
        return await self.request("GET", "/v1/presence", params={"user_ids": ",".join(user_ids)})

    async def blocks(self) -> list[str]:
        return (await self.request("GET", "/v1/users/me/blocks"))["user_ids"]

    async def block(self, user_id: str) -> None:
        await self.request("POST", "/v1/users/me/blocks", json={"user_id": user_id})

    async def unblock(self, user_id: str) -> None:
        await self.request("DELETE", f"/v1/users/me/blocks/{_q(user_id)}")

    async def conversations(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page, most recently active first: ``{conversations, next_cursor}``."""
        return await self.request("GET", "/v1/conversations", params={"cursor": cursor, "limit": limit})

    async def all_conversations(self) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            page = await self.conversations(cursor=cursor, limit=200)
            for conv in page["conversations"]:
                yield conv
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def create_direct(self, user_id: str, *, e2ee: bool = False) -> dict[str, Any]:
        """The direct conversation with ``user_id``, created if it does not exist (one per pair)."""
        return await self.request("POST", "/v1/conversations",
                                  json={"kind": "direct", "members": [user_id], "e2ee": e2ee})

    async def create_group(self, title: str, member_ids: Iterable[str], *, e2ee: bool = False) -> dict[str, Any]:
        return await self.request("POST", "/v1/conversations",
                                  json={"kind": "group", "title": title, "members": list(member_ids), "e2ee": e2ee})

    async def conversation(self, cid: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/conversations/{_q(cid)}")

    async def rename(self, cid: str, title: str) -> dict[str, Any] | None:
        return await self.request("PATCH", f"/v1/conversations/{_q(cid)}", json={"title": title})

    async def add_members(self, cid: str, user_ids: Iterable[str]) -> dict[str, Any] | None:
        return await self.request("POST", f"/v1/conversations/{_q(cid)}/members", json={"user_ids": list(user_ids)})

    async def remove_member(self, cid: str, user_id: str) -> dict[str, Any] | None:
        return await self.request("DELETE", f"/v1/conversations/{_q(cid)}/members/{_q(user_id)}")

    async def set_role(self, cid: str, user_id: str, role: str) -> dict[str, Any] | None:
        return await self.request("PATCH", f"/v1/conversations/{_q(cid)}/members/{_q(user_id)}", json={"role": role})

    async def post_message(self, cid: str, body: str, *, client_msg_id: str | None = None,
                           attachments: list[str] | None = None, reply_to: int | None = None) -> dict[str, Any]:
        """Send over HTTP (the stored event). Not retried: retry with the same ``client_msg_id``."""
        frame: dict[str, Any] = {"client_msg_id": client_msg_id or uuid.uuid4().hex, "body": body}
        if attachments:
            frame["attachments"] = attachments
        if reply_to is not None:
            frame["reply_to"] = reply_to
        return await self.request("POST", f"/v1/conversations/{_q(cid)}/messages", json=frame)

    async def history(self, cid: str, *, before_seq: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """Messages newest first, edits applied: ``{messages, has_more}``."""
        return await self.request("GET", f"/v1/conversations/{_q(cid)}/messages",
                                  params={"before_seq": before_seq, "limit": limit})

    async def events_after(self, cid: str, after_seq: int = 0, *, limit: int | None = None) -> dict[str, Any]:
        """The resume feed, in seq order: ``{events, last_seq, has_more}``."""
        return await self.request("GET", f"/v1/conversations/{_q(cid)}/events",
                                  params={"after_seq": after_seq, "limit": limit})

    async def mark_read(self, cid: str, seq: int) -> None:
        await self.request("POST", f"/v1/conversations/{_q(cid)}/read", json={"seq": seq})

    async def edit(self, cid: str, seq: int, body: str) -> dict[str, Any] | None:
        return await self.request("PATCH", f"/v1/conversations/{_q(cid)}/messages/{seq}", json={"body": body})

    async def delete(self, cid: str, seq: int) -> dict[str, Any] | None:
        return await self.request("DELETE", f"/v1/conversations/{_q(cid)}/messages/{seq}")

    async def react(self, cid: str, seq: int, emoji: str) -> dict[str, Any] | None:
        return await self.request("POST", f"/v1/conversations/{_q(cid)}/messages/{seq}/reactions",
                                  json={"emoji": emoji})

    async def unreact(self, cid: str, seq: int, emoji: str) -> dict[str, Any] | None:
        return await self.request("DELETE", f"/v1/conversations/{_q(cid)}/messages/{seq}/reactions/{_q(emoji)}")

    async def search(self, q: str, *, conversation_id: str | None = None, limit: int | None = None,
                     cursor: str | None = None) -> dict[str, Any]:
        return await self.request("GET", "/v1/search", params={"q": q, "conversation_id": conversation_id,
                                                               "limit": limit, "cursor": cursor})

    async def upload_media(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload a file (docs/protocol.md, "Media") and return its ``media_id`` for ``attachments``.

        The server answers a presigned POST; the bytes go straight to storage, never through the
        gateway, and without our bearer token (storage authorizes the form's signed policy)."""
        grant = await self.request("POST", "/v1/media", json={"filename": filename, "content_type": content_type,
                                                              "size": len(data)})
        url = urljoin(self.base_url + "/", grant["upload"]["url"])
        r = await self.http.post(url, data=grant["upload"]["fields"], files={"file": (filename, data, content_type)})
        if r.status_code >= 300:
            raise ApiError.from_response(r)
        return grant["media_id"]

    async def media_url(self, media_id: str) -> str:
        """A short-lived download URL of an upload (the ``Location`` of the server's 302)."""
        r = await self._send("GET", f"/v1/media/{_q(media_id)}")
        if r.status_code >= 400:
            raise ApiError.from_response(r)
        return urljoin(self.base_url + "/", r.headers["location"])

    # ---- realtime -------------------------------------------------------------------------------
    def connect(self, *, since: dict[str, int] | None = None, signals_max: int = 1000) -> "Connection":
        """The realtime connection (``async with client.connect() as conn``). ``since`` adds
        conversations to follow from a seq (0: from the start); the client's ``last_seq``, kept
        from earlier connections, covers the rest."""
        for cid, seq in (since or {}).items():
            if seq > self.last_seq.get(cid, -1):
                self.last_seq[cid] = seq
        return Connection(self, signals_max=signals_max)


def _q(part: str) -> str:
    return quote(str(part), safe="")


# ---- the realtime connection ----------------------------------------------------------------------

class _Retry(Exception):
    def __init__(self, why: str, after_s: float = 0.0):
        super().__init__(why)
        self.after_s = after_s


class _AuthRejected(Exception):
    pass


_DISCONNECTED = object()    # a pending send's outcome when its socket went away
_END = object()


class Connection:
    """One logical realtime session over as many WebSockets as it takes.

    States: connecting → live → (cut → backing off → connecting …) → closed. Opening waits for the
    first ``welcome``. After a cut the sends in flight wait, the socket is reopened, and ``hello``
    resumes every followed conversation after the last seq handed to ``events()``. The access token
    is refreshed ahead of its expiry and pushed to the live socket in an ``auth`` frame, so the
    server never closes it for age; if it does (1008), the connection refreshes and reconnects.
    """

    def __init__(self, client: Client, *, signals_max: int = 1000):
        self.client = client
        self._order = EventOrder(client.last_seq, client.user_id)
        self._events: asyncio.Queue = asyncio.Queue()
        self._signals: deque = deque(maxlen=signals_max)   # ephemeral: the oldest go first when nobody reads
        self._signal_wake = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._state = asyncio.Event()       # set on every change of _ws or _ended
        self._welcomed = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._closing = False
        self._pending: dict[str, asyncio.Future] = {}
        self._window = asyncio.Semaphore(MAX_INFLIGHT_SENDS)
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self.session_id: str | None = None
        self.stats = {"connects": 0, "reconnects": 0, "auth_renewals": 0, "gaps_filled": 0, "send_retries": 0}

    # ---- lifecycle ------------------------------------------------------------------------------
    async def __aenter__(self) -> "Connection":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the first socket; returns after its ``welcome``. Transient failures are retried
        (bound it with ``asyncio.timeout`` if you must); a refusal raises."""
        self.client._token_listeners.add(self._on_new_token)
        self._runner = asyncio.get_running_loop().create_task(self._run())
        self._spawn(self._renew_tokens())
        welcomed = asyncio.ensure_future(self._welcomed.wait())
        await asyncio.wait({welcomed, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        welcomed.cancel()
        if not self._welcomed.is_set():
            await self.close()
            raise self._error or SessionClosed(None, "closed before the first welcome")

    async def close(self) -> None:
        """Close the socket (1000) and end ``events()``; sends still waiting raise SessionClosed."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "client closing")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(BaseException):
                await self._runner
        for t in list(self._tasks):
            t.cancel()
        self._end(None)

    @property
    def websocket(self) -> ClientConnection | None:
        """The socket in use now, if any (for diagnostics and fault tests)."""
        return self._ws

    @property
    def last_seq(self) -> dict[str, int]:
        return self._order.last_seq

    # ---- what the application reads ------------------------------------------------------------
    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Conversation events (the ``event`` frame without ``type``), per conversation in seq
        order, each once, without gaps. Ends when the connection is closed; raises what ended it
        if it failed (ApiError ``unauthorized`` when the login is gone, SessionClosed otherwise)."""
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)       # for any other reader
                if self._error is not None:
                    raise self._error
                return
            yield item

    async def signals(self) -> AsyncIterator[dict[str, Any]]:
        """Ephemeral frames as the server sends them: ``typing``, ``presence``, ``receipt``, and
        ``error`` frames that answer nothing this connection waits for (a failed ``typing`` or
        ``read``, a ``hello.since`` entry refused). Not replayed after a reconnect; the oldest
        are dropped past ``signals_max``. Ends when the connection ends."""
        while True:
            while self._signals:
                yield self._signals.popleft()
            if self._ended:
                return
            self._signal_wake.clear()
            await self._signal_wake.wait()

    # ---- what the application does -------------------------------------------------------------
    async def send(self, cid: str, body: str, attachments: list[str] | None = None, reply_to: int | None = None,
                   client_msg_id: str | None = None) -> Ack:
        """Send a message; returns once the server stored it. Retried with the same
        ``client_msg_id`` (so stored once) through reconnects, ``unavailable``, ``rate_limited``
        (after ``retry_after_ms``) and an ack that does not come within ``ack_timeout_s``; a
        refusal (``invalid``, ``forbidden``, ``not_found``, ``conflict``, ``too_large``…) raises
        ApiError. Sent while disconnected, it waits for the reconnect."""
        cmid = client_msg_id or uuid.uuid4().hex
        if cmid in self._pending:
            raise ValueError(f"client_msg_id {cmid!r} is already being sent on this connection")
        frame: dict[str, Any] = {"type": "send", "conversation_id": cid, "client_msg_id": cmid, "body": body}
        if attachments:
            frame["attachments"] = list(attachments)
        if reply_to is not None:
            frame["reply_to"] = reply_to
        # Non-ASCII goes as UTF-8, not \u escapes: up to six times smaller, further from the frame limit.
        text = json.dumps(frame, ensure_ascii=False)
        client = self.client
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ApiError("invalid", 422, "body: not valid Unicode (a lone surrogate)") from None
        if size > client.max_frame_bytes:
            # The server would close the socket (1009) for it, failing every send in flight with it.
            raise ApiError("too_large", 413, f"frame over {client.max_frame_bytes} bytes: the body is far over "
                                             "the server's limit")
        loop = asyncio.get_running_loop()
        async with self._window:
            attempt = internal = 0
            while True:
                ws = await self._wait_live()
                fut = self._pending[cmid] = loop.create_future()
                try:
                    try:
                        await ws.send(text)
                        outcome = await asyncio.wait_for(fut, client.ack_timeout_s)
                    except ConnectionClosed:
                        outcome = _DISCONNECTED
                    except asyncio.TimeoutError:
                        outcome = None
                finally:
                    if self._pending.get(cmid) is fut:
                        del self._pending[cmid]
                if isinstance(outcome, dict) and outcome.get("type") == "ack":
                    return Ack(cid, cmid, outcome["seq"], outcome.get("created_at", ""))
                attempt += 1
                self.stats["send_retries"] += 1
                if outcome is _DISCONNECTED or outcome is None:
                    continue        # resend at once on the next socket (or this one, after a silence)
                err = ApiError.from_frame(outcome)
                if err.code not in RETRYABLE:
                    raise err
                if err.code == "internal":
                    internal += 1
                    if internal > MAX_INTERNAL_RETRIES:
                        raise err
                wait = client.backoff.delay(attempt, client.rng)
                if err.retry_after_ms is not None:
                    wait = max(wait, err.retry_after_ms / 1000 * (1 + client.rng.uniform(0, 0.1)))
                await client.sleep(wait)

    async def typing(self, cid: str, on: bool = True) -> None:
        """Tell the others; dropped while disconnected (it would be stale by the reconnect)."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "typing", "conversation_id": cid, "on": on}))

    async def read(self, cid: str, seq: int) -> None:
        """Move the read cursor (others, and this user's other sockets, get a ``receipt``); waits for
        a live socket. A refusal comes later as an ``error`` in ``signals()`` with ``ref`` = the
        conversation."""
        while True:
            ws = await self._wait_live()
            try:
                await ws.send(json.dumps({"type": "read", "conversation_id": cid, "seq": seq}))
                return
            except ConnectionClosed:
                await asyncio.sleep(0)

    async def track(self, cid: str, after_seq: int) -> None:
        """Follow ``cid`` from ``after_seq`` (e.g. the ``last_seq`` a history page showed): the
        events after it are replayed now (``sync``) and on every resume."""
        ready, gap = self._order.track(cid, after_seq)
        self._emit(ready)
        if gap is not None:
            self._spawn(self._fill(gap))
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "sync", "conversation_id": cid,
                                          "after_seq": self._order.last_seq.get(cid, after_seq)}))

    # ---- the socket loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        client = self.client
        attempt = 0
        refused = 0             # handshakes refused for the token since the last welcome
        refresh_first = False
        try:
            while not self._closing:
                try:
                    if refresh_first:
                        await client._refresh(stale=client.access_token)
                        refresh_first = False
                    ws = await self._open()
                except _AuthRejected:
                    refused += 1
                    if refused > 1:
                        raise ApiError("unauthorized", 401, "the server refused a fresh access token") from None
                    refresh_first = True
                    continue
                except (_Retry, httpx.TransportError, ApiError) as exc:
                    if isinstance(exc, ApiError) and exc.code not in RETRYABLE:
                        raise
                    attempt += 1
                    wait = max(client.backoff.delay(attempt, client.rng), _asked_wait_s(exc))
                    log.info("connecting failed (%r); again in %.2f s", exc, wait)
                    await client.sleep(wait)
                    continue
                refused = 0
                opened = client.clock()
                self._set_ws(ws)
                self.stats["connects"] += 1
                if self.stats["connects"] > 1:
                    self.stats["reconnects"] += 1
                self._welcomed.set()
                code, reason, last_error = await self._read(ws)
                self._set_ws(None)
                for fut in list(self._pending.values()):
                    if not fut.done():
                        fut.set_result(_DISCONNECTED)
                if self._closing:
                    break
                action = close_action(code, reason, last_error.get("code") if last_error else None)
                log.info("socket closed (%s %s): %s", code, reason, action)
                if action == "fatal":
                    raise SessionClosed(code, reason)
                if action == "refresh":
                    refresh_first, attempt = True, 0
                    continue
                if client.clock() - opened >= client.backoff.stable_s:
                    attempt = 0
                attempt += 1
                wait = client.backoff.delay(attempt, client.rng)
                if last_error and last_error.get("retry_after_ms"):
                    wait = max(wait, last_error["retry_after_ms"] / 1000)
                await client.sleep(wait)
        except asyncio.CancelledError:
            pass
        except (ApiError, SessionClosed) as exc:
            self._end(exc)
        except Exception as exc:
            log.exception("realtime connection failed")
            self._end(SessionClosed(None, f"{type(exc).__name__}: {exc}"))
        finally:
            self._set_ws(None)
            self._end(None)

    async def _open(self) -> ClientConnection:
        """Connect, say hello with ``since``, wait for ``welcome``."""
        token = await self.client.token()     # a refresh may fail: the caller retries or gives up
        try:
            ws = await ws_connect(self.client.ws_url, max_size=2**22, open_timeout=15, close_timeout=5,
                                  ping_interval=20, ping_timeout=20)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise _AuthRejected() from None
            if status in (429, 502, 503, 504) or status >= 500:
                raise _Retry(f"handshake answered {status}") from None
            raise SessionClosed(None, f"handshake answered HTTP {status}") from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            raise _Retry(repr(exc)) from None
        since = self._order.since()
        first = dict(list(since.items())[:MAX_HELLO_SINCE])
        last_error: dict[str, Any] | None = None
        try:
            await ws.send(json.dumps({"type": "hello", "token": token, "since": first}))
            while True:
                frame = _parse(await asyncio.wait_for(ws.recv(), 15))
                if frame is None:
                    continue
                if frame.get("type") == "welcome":
                    self.session_id = frame.get("session_id")
                    if self.client.user_id is None:
                        self.client.user_id = self._order.user_id = frame.get("user_id")
                    break
                if frame.get("type") == "error":
                    last_error = frame
        except ConnectionClosed:
            code, reason = ws.close_code or 1006, ws.close_reason or ""
            action = close_action(code, reason, last_error.get("code") if last_error else None)
            if action == "refresh":
                raise _AuthRejected() from None
            if action == "fatal":
                raise SessionClosed(code, reason) from None
            after = (last_error or {}).get("retry_after_ms") or 0
            raise _Retry(f"closed {code} before welcome", after / 1000) from None
        except (OSError, asyncio.TimeoutError) as exc:
            await ws.close()
            raise _Retry(repr(exc)) from None
        for cid, seq in list(since.items())[MAX_HELLO_SINCE:]:
            await ws.send(json.dumps({"type": "sync", "conversation_id": cid, "after_seq": seq}))
        return ws

    async def _read(self, ws: ClientConnection) -> tuple[int, str, dict[str, Any] | None]:
        """Handle frames until the socket closes: (close code, reason, last error frame without ref)."""
        last_error = None
        try:
            async for raw in ws:
                frame = _parse(raw)
                if frame is None:
                    continue
                if frame.get("type") == "error" and frame.get("ref") is None:
                    last_error = frame
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        return ws.close_code or 1006, ws.close_reason or "", last_error

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            if not isinstance(frame.get("conversation_id"), str) or not isinstance(frame.get("seq"), int):
                log.warning("ignoring an event frame without conversation_id or seq")
                return
            event = {k: v for k, v in frame.items() if k != "type"}
            ready, gap = self._order.accept(event)
            self._emit(ready)
            if gap is not None:
                self._spawn(self._fill(gap))
        elif kind == "ack":
            fut = self._pending.get(frame.get("client_msg_id") or "")
            if fut is not None and not fut.done():
                fut.set_result(frame)
        elif kind == "error":
            ref = frame.get("ref")
            fut = self._pending.get(ref) if ref else None
            if fut is not None and not fut.done():
                fut.set_result(frame)
                return
            if ref and frame.get("code") == "not_found" and ref in self._order.last_seq:
                self._order.forget(ref)     # a hello.since entry (or sync) we may no longer read
            self._signal(frame)
        elif kind == "authed":
            self.stats["auth_renewals"] += 1
        elif kind in ("typing", "presence", "receipt"):
            self._signal(frame)
        elif kind not in ("pong", "welcome"):
            log.debug("ignoring a %r frame", kind)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            self._events.put_nowait(ev)

    def _signal(self, frame: dict[str, Any]) -> None:
        self._signals.append(frame)
        self._signal_wake.set()

    async def _fill(self, gap: Gap) -> None:
        """Fetch a gap's events from the HTTP resume feed, which answers with where it ended
        (``has_more``). The ``sync`` frame would replay them on the socket, but nothing marks the
        end of its answer, so a seq the user may not see would leave the gap open for good."""
        cid = gap.conversation_id
        events = await self._fetch_gap(gap)
        if events is None:
            return
        self.stats["gaps_filled"] += 1
        ready, again = self._order.filled(cid, events, gap.upto_seq)
        self._emit(ready)
        if again is not None:
            self._spawn(self._fill(again))

    async def _fetch_gap(self, gap: Gap) -> list[dict[str, Any]] | None:
        """The stored events of ``gap``, retried while the server is unavailable; None if the
        conversation cannot be read (then it is forgotten, or left for the next event to retry)."""
        cid, client = gap.conversation_id, self.client
        attempt = 0
        while not self._closing:
            try:
                events, after = [], gap.after_seq
                while after < gap.upto_seq:
                    page = await client.events_after(cid, after, limit=min(_PAGE, gap.upto_seq - after))
                    events += [e for e in page["events"] if e["seq"] <= gap.upto_seq]
                    if not page["events"] or not page["has_more"]:
                        break
                    after = page["events"][-1]["seq"]
                return events
            except ApiError as exc:
                if exc.code not in RETRYABLE:
                    log.warning("cannot fill %s: %s", gap, exc)
                    if exc.code == "not_found":
                        self._order.forget(cid)
                    else:
                        self._order.fill_failed(cid)
                    return None
            except httpx.TransportError as exc:
                log.info("filling %s failed: %r", gap, exc)
            attempt += 1
            await client.sleep(client.backoff.delay(attempt, client.rng))
        return None

    async def _renew_tokens(self) -> None:
        """Refresh the access token ahead of its expiry; ``_on_new_token`` hands it to the socket."""
        client = self.client
        while not self._closing and client.refresh_token:
            wait = client._refresh_at - client.clock()
            if wait > 0:
                await client.sleep(min(wait, 60.0))   # woken now and then: the clock may jump
                continue
            try:
                await client.token()
            except ApiError as exc:
                if exc.code == "unauthorized":
                    return      # the login is gone; the socket's 1008 will end the connection
            except httpx.TransportError:
                pass
            if client._refresh_at <= client.clock():
                await client.sleep(client.backoff.delay(3, client.rng))   # not refreshed: try again soon

    def _on_new_token(self, token: str) -> None:
        ws = self._ws
        if ws is not None:
            self._spawn(self._send_quietly(ws, {"type": "auth", "token": token}))

    @staticmethod
    async def _send_quietly(ws: ClientConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(frame))

    # ---- state ----------------------------------------------------------------------------------
    async def _wait_live(self) -> ClientConnection:
        while True:
            if self._ended or self._closing:
                raise self._error or SessionClosed(1000, "closed by the application")
            # A socket that is cut but not yet noticed by the reader is not live: a send on it
            # fails at once without yielding, and retrying at once would spin and starve the
            # very reader that notices the cut. Wait for the reader to replace it instead.
            if self._ws is not None and self._ws.state is State.OPEN:
                return self._ws
            self._state.clear()
            await self._state.wait()

    def _set_ws(self, ws: ClientConnection | None) -> None:
        self._ws = ws
        self._state.set()

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self.client._token_listeners.discard(self._on_new_token)
        self._events.put_nowait(_END)
        self._signal_wake.set()
        self._state.set()
        for fut in list(self._pending.values()):
            if not fut.done():
                fut.set_result(_DISCONNECTED)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _asked_wait_s(exc: BaseException) -> float:
    """How long the server asked us to wait before trying again, if it did."""
    if isinstance(exc, _Retry):
        return exc.after_s
    if isinstance(exc, ApiError) and exc.retry_after_ms:
        return exc.retry_after_ms / 1000
    return 0.0


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    if isinstance(raw, bytes):
        return None
    try:
        frame = json.loads(raw)
    except ValueError:
        log.warning("server sent a frame that is not JSON")
        return None
    return frame if isinstance(frame, dict) else None
