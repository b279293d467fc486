"""The storage ports. Each method's docstring is its contract; every adapter passes
the contract suite in ``tests/storage/``.

Records are plain dicts (they cross Ray calls). Times are timezone-aware UTC
``datetime`` objects. Every method may raise ``StoreUnavailable`` (see errors.py)
within the adapter's configured timeout; none hangs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Sequence

Event = dict[str, Any]
"""{conversation_id, seq, kind, sender_id, client_msg_id, body, attachments, reply_to, created_at, ...}

A message may also carry ``terms`` (its normalized words, raychat/terms.py) when it is appended:
they are stored for ``EventStore.search`` and never returned by any read."""

Conversation = dict[str, Any]
"""{conversation_id, kind: "direct"|"group", title, members: [user_id], roles: {user_id: role},
created_at, last_seq, last_activity_at, e2ee: bool (absent means False)}"""

User = dict[str, Any]
"""{user_id, username, password_hash, display_name, created_at}; password_hash is None for an
account made by OpenID Connect login (it has no password)."""

RefreshToken = dict[str, Any]
"""{token_hash, family_id, user_id, created_at, expires_at, spent: bool, revoked: bool,
replaced_by: token_hash|None}. Only the SHA-256 of a refresh token is ever stored."""

Identity = dict[str, Any]
"""{issuer, subject, user_id, created_at}: an OpenID Connect account (iss, sub) linked to a user."""

PROFILE_FIELDS = frozenset({"display_name"})
"""The User fields ``UserStore.update_profile`` may set: what a user shows, never what identifies them."""

KeyBundle = dict[str, Any]
"""{user_id, identity_key, signed_prekey, updated_at}: opaque strings the client made."""

OneTimePrekey = dict[str, Any]
"""{key_id: int, public_key: str}"""


class EventStore(Protocol):
    async def append(self, events: Sequence[Event]) -> None:
        """Store ``events`` (all of one conversation, ascending seq) durably, in order, with
        their ``terms`` if they have any (what ``search`` finds them by).

        Returns once every event is durable under the configured write concern.
        Stops at the first event a unique index refuses and raises
        ``DuplicateEvent(key, index)``: events before ``index`` are stored, the rest are not.
        ``key`` is "seq" for (conversation_id, seq) and "client_msg_id" for
        (conversation_id, sender_id, client_msg_id). Events whose client_msg_id is None
        are never deduplicated. An event the store cannot take at all (say, text with a lone
        surrogate) stops it the same way with ``EventRefused(message, index)``.
        """

    async def last_seq(self, conversation_id: str, at_least: int = 0) -> int:
        """The highest stored seq of the conversation above ``at_least``, else ``at_least`` (0:
        none stored). A caller that knows events up to a seq were stored (a checkpoint, a page it
        read) passes it, and only what lies above is read."""

    async def read_after(self, conversation_id: str, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with seq > after_seq, ascending."""

    async def read_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        """Up to ``limit`` events with seq < before_seq (all, if None), descending."""

    async def find_client_msg(self, conversation_id: str, sender_id: str, client_msg_id: str) -> Event | None:
        """The event that sender stored under that client_msg_id, or None."""

    async def get(self, conversation_id: str, seq: int) -> Event | None:
        """The event at that seq, with its projections (see edit_message…), or None."""

    async def messages_before(self, conversation_id: str, before_seq: int | None, limit: int) -> list[Event]:
        """Up to ``limit`` events of kind "message" with seq < before_seq (all, if None), descending."""

    async def count_messages_after(self, conversation_id: str, after_seq: int) -> int:
        """How many events of kind "message" have seq > after_seq. (Counted from the top: the
        retention job deletes old events, so a count from the bottom would shrink.)"""

    async def last_membership_change(self, conversation_id: str, user_id: str, upto_seq: int) -> Event | None:
        """The latest member_added / member_removed event naming user_id with seq <= upto_seq, or None."""

    async def search(self, conversation_ids: Sequence[str], terms: Sequence[str], before: str | None,
                     limit: int) -> tuple[list[Event], str | None]:
        """Messages of the given conversations whose terms include every one of ``terms``, not
        deleted, newest first: by ``created_at``, ties in a fixed order. Returns up to ``limit`` of
        them, as ``get`` returns them (projections applied, no terms), and a cursor for the next
        page: None when this page is the last. ``before`` is such a cursor (None: from the
        newest); the next page holds what comes after the cursor's message in that order, so
        paging repeats nothing and skips nothing that still matches. Cursors are
        opaque strings; one this store never gave out raises ``ValueError``. Nothing (and a
        None cursor) when ``conversation_ids`` or ``terms`` is empty. Messages appended without
        terms are never found."""

    # Projections onto a stored message. Each is idempotent: applying it again changes nothing,
    # which is what lets a conversation replay its events after a crash.
    async def edit_message(self, conversation_id: str, seq: int, body: str, edited_at: datetime,
                           terms: Sequence[str] | None = None) -> None:
        """Set the message's body and edited_at, and replace its search terms with ``terms``
        (None: it has none afterwards), unless it is deleted or a later edit is applied."""

    async def erase_message(self, conversation_id: str, seq: int) -> None:
        """Mark the message deleted and erase its body, attachments, reactions and search terms,
        and the bodies of the edit events that target it."""

    async def attached_elsewhere(self, conversation_id: str, media_id: str, except_seq: int) -> bool:
        """Whether a message of the conversation other than ``except_seq`` still attaches
        ``media_id`` (a deleted message attaches nothing)."""

    async def set_reaction(self, conversation_id: str, seq: int, user_id: str, emoji: str, on: bool) -> None:
        """Add (on) or remove the (emoji, user) pair on the message's ``reactions``: at most one each."""


class ConversationStore(Protocol):
    async def create(self, conversation: Conversation, direct_key: str | None = None) -> tuple[Conversation, bool]:
        """Insert a conversation. With a ``direct_key`` (one per pair of users), an existing
        conversation with that key wins: returns (existing, False) and inserts nothing.
        Otherwise returns (conversation, True)."""

    async def get(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""

    async def list_for_user(self, user_id: str, before: datetime | None, limit: int,
                            before_id: str | None = None) -> list[Conversation]:
        """Conversations with ``user_id`` among members, most recently active first (ties: higher
        conversation_id first). With ``before``: those strictly after (before, before_id) in that
        order — or, without before_id, active strictly before ``before``. What a page reads should
        not grow with the user's whole list (a store may take a few queries to keep it so)."""

    async def save_progress(self, conversation_id: str, progress: dict[str, Any],
                            reads: dict[str, tuple[int, int]] | None = None, *, full: bool = True) -> None:
        """Checkpoint the conversation actor's projection: ``progress`` has state_seq (required),
        and any of last_seq, message_count, members, roles, title, last_message and
        last_activity_at (keys left out are left alone). Applied only if state_seq is above the
        stored one (so a late save never undoes a newer one); last_activity_at never moves back.
        None values (but title) are left alone. ``reads`` raises read cursors as ``set_reads``
        does, in the same write when the checkpoint applies, and in any case.

        Without ``full``, ``get`` and ``list_for_user`` return the new checkpoint but the list
        position (``last_activity_at``, the order of ``list_for_user``) stays where the last full
        save put it; a save with members, roles or title is always full. Lets a store keep the
        write every message causes off whatever indexes the list by member."""

    async def ids_for_member(self, user_id: str, limit: int) -> list[str]:
        """The ids of up to ``limit`` conversations with ``user_id`` among members, most recently
        active first (what search looks through). What it reads should not grow with the user's
        whole list beyond ``limit`` (a store may take a few queries to keep it so)."""

    async def direct_peers(self, user_id: str, limit: int = 10_000) -> list[str]:
        """The other member of each direct conversation of user_id (presence goes to them). One query."""

    async def set_reads(self, conversation_id: str, reads: dict[str, tuple[int, int]]) -> None:
        """For each {user_id: (seq, count)}, raise that user's read cursor (``reads.<user_id>``:
        seq, and how many messages it covers) to these values; never lowers them. One write.
        User ids hold no '.' and start with no '$'."""


class UserStore(Protocol):
    async def create(self, user: User) -> None:
        """Insert a user. Raises ``DuplicateKey("username")`` if the username is taken."""

    async def by_username(self, username: str) -> User | None:
        """The user with that (already case-folded) username, or None."""

    async def by_id(self, user_id: str) -> User | None:
        """The user, or None."""

    async def update_profile(self, user_id: str, changes: dict[str, Any]) -> User | None:
        """Set the fields in ``changes`` and return the user as stored afterwards (a concurrent
        change of the same user may show in it); None (and nothing written) if there is no
        such user. Only
        ``PROFILE_FIELDS`` may be changed: any other key raises ``StoreRejected`` and
        nothing is written. Empty ``changes`` returns the user unchanged."""


class BlockStore(Protocol):
    """Who blocks whom. A block has a direction (blocker → blocked); ``between`` reads both."""

    async def block(self, blocker_id: str, blocked_id: str, at: datetime) -> None:
        """Record the block. Idempotent, also under concurrent calls: blocking again keeps
        one record and its first ``at``."""

    async def unblock(self, blocker_id: str, blocked_id: str) -> None:
        """Remove the block if it exists (idempotent). A block in the other direction stays."""

    async def list_blocked(self, blocker_id: str, limit: int) -> list[str]:
        """Up to ``limit`` ids ``blocker_id`` blocks, in ascending id order."""

    async def between(self, a: str, b: str) -> bool:
        """True if ``a`` blocks ``b`` or ``b`` blocks ``a``. One query; sees every block
        and unblock that returned before it was called."""


class KeyStore(Protocol):
    """The end-to-end encryption key directory. Keys are opaque strings; the store never
    reads them. One-time prekeys belong to the identity key they were uploaded under:
    after a user replaces their identity key, the ones made under the old one are never
    handed out (a sender could not use them with the new identity)."""

    async def put_bundle(self, user_id: str, identity_key: str, signed_prekey: str, at: datetime) -> None:
        """Create or replace the user's identity key and signed prekey (last writer wins)."""

    async def get_bundle(self, user_id: str) -> KeyBundle | None:
        """The user's bundle, or None if they never uploaded one."""

    async def add_prekeys(self, user_id: str, identity_key: str, prekeys: Sequence[OneTimePrekey]) -> None:
        """Store one-time prekeys made under ``identity_key``. A ``key_id`` the user uploaded
        under that identity before, claimed or not, is skipped: a retried upload adds
        nothing and a claimed prekey never comes back. ``key_id`` must be unique within
        ``prekeys`` (else ``StoreRejected``, nothing written)."""

    async def claim_prekey(self, user_id: str, identity_key: str, at: datetime) -> OneTimePrekey | None:
        """Take one unclaimed prekey made under ``identity_key``, lowest key_id first, and
        mark it claimed, atomically: each prekey is returned at most once, whatever the
        number of concurrent callers or gateway replicas. None when none is left. If the
        reply is lost, the prekey stays claimed and is never returned (at most once, not
        exactly once)."""

    async def count_prekeys(self, user_id: str, identity_key: str) -> int:
        """How many prekeys made under ``identity_key`` are still unclaimed."""


Media = dict[str, Any]
"""{media_id, owner_id, key, filename, content_type, size, created_at, conversations: [conversation_id],
verified: bool, attached: bool}: one upload. ``size`` and ``content_type`` are what the uploader
declared; ``verified`` is set once the stored object was seen to match them."""


class MediaStore(Protocol):
    """Upload records. A record is *pending* while no conversation names it; a pending record that a
    sweep claimed can never be attached again (the sweep deletes its object, then the record)."""

    async def create(self, media: Media) -> None:
        """Insert a new record (``conversations`` empty, ``verified`` and ``attached`` False).
        ``DuplicateKey("media_id")`` if the id exists."""

    async def get(self, media_id: str) -> Media | None:
        """The record, or None."""

    async def attach(self, media_id: str, owner_id: str, conversation_id: str) -> bool:
        """In one atomic step, only if the record exists, belongs to ``owner_id`` and no sweep
        claimed it: add ``conversation_id`` to ``conversations`` (once), set ``verified`` and
        ``attached``. True if so (also when it was attached there already), else False and
        nothing changes."""

    async def release(self, media_id: str, conversation_id: str) -> None:
        """No message of ``conversation_id`` attaches the media any more: remove it from
        ``conversations``; a record left with none is pending again (``attached`` False), so the
        sweep removes it unless ``attach`` comes first. Idempotent; nothing if there is no record."""

    async def pending(self, owner_id: str) -> tuple[int, datetime | None]:
        """How many of the owner's records are pending, and when the oldest of them was created."""

    async def claim_unattached(self, before: datetime, limit: int) -> list[Media]:
        """Claim up to ``limit`` pending records created before ``before``, so that ``attach``
        refuses them from now on, and return them; also returns records claimed earlier and not
        yet deleted (a sweep that died half way). Concurrent callers may get the same records."""

    async def delete(self, media_id: str) -> None:
        """Remove the record; idempotent."""


class RefreshTokenStore(Protocol):
    """Refresh tokens by hash, in families: each rotation adds the next token of its family.

    A token is *live* while it is neither spent nor revoked and ``at < expires_at``. Tokens are
    kept (spent or revoked) until their expiry, so the reuse of a spent one is recognised; after
    it the store may forget them.
    """

    async def insert(self, token: RefreshToken) -> None:
        """Store a new token (``spent`` and ``revoked`` False, ``replaced_by`` None). Raises
        ``DuplicateKey("token_hash")`` if another token has that hash; inserting the identical
        record again (a resend after a lost reply) is no conflict."""

    async def get(self, token_hash: str) -> RefreshToken | None:
        """The token with that hash in whatever state, or None (never stored, or forgotten
        after its expiry)."""

    async def spend(self, token_hash: str, successor_hash: str, at: datetime) -> bool:
        """Mark the token spent and replaced by ``successor_hash`` if it is live at ``at``, as one
        atomic conditional update: of any number of concurrent calls for one token, at most one
        returns True. Also True for a resend of the winning call (same ``successor_hash``) while
        the token is not revoked, so a lost reply does not look like a reuse. Otherwise False
        and nothing changes."""

    async def revoke_family(self, family_id: str) -> int:
        """Mark every stored token of the family revoked and spent; idempotent. Returns how many
        were not revoked before. A token of the family inserted after this returns is not
        covered: callers insert a successor before they spend its parent."""


class IdentityStore(Protocol):
    """Links from an OpenID Connect identity ``(issuer, subject)`` to one user; never changed."""

    async def link(self, identity: Identity) -> Identity:
        """Store the link unless ``(issuer, subject)`` is linked already, atomically; returns
        the stored link, which is the earlier one if there was one (it is never overwritten).
        Of concurrent calls for one identity, all return the same link."""

    async def find(self, issuer: str, subject: str) -> Identity | None:
        """The link of ``(issuer, subject)`` (compared exactly, as stored), or None."""


Device = dict[str, Any]
"""{device_id, user_id, platform: "fcm"|"apns"|"webhook", token, created_at}: where pushes go."""


class DeviceStore(Protocol):
    """Push targets. A ``(platform, token)`` pair belongs to at most one user and one device."""

    async def register(self, device: Device, max_per_user: int) -> Device:
        """Store the device and return it as stored. If ``(platform, token)`` is registered to
        the same user already, nothing changes and the stored device (its device_id and
        created_at) is returned, so registering again is idempotent. If it is registered to
        another user, it moves: that device is removed and this one stored (a phone changed
        hands, or another account signed in on it). The user then keeps at most
        ``max_per_user`` devices: the oldest others are removed. Concurrent calls for one pair
        end with one device."""

    async def list_for_user(self, user_id: str) -> list[Device]:
        """The user's devices, oldest first."""

    async def list_for_users(self, user_ids: Sequence[str]) -> list[Device]:
        """The devices of all these users, in one query."""

    async def remove(self, device_id: str, user_id: str | None = None) -> bool:
        """Remove the device (only if it is ``user_id``'s, when given); True if one was removed."""

    async def remove_token(self, platform: str, token: str) -> int:
        """Remove whatever device has that token (the provider said it is gone); how many (0 or 1)."""


class PresenceStore(Protocol):
    async def set_online(self, user_id: str, ttl_s: int) -> None:
        """Mark online; the mark expires by itself after ``ttl_s`` unless refreshed."""

    async def refresh(self, user_ids: Sequence[str], ttl_s: int) -> list[str]:
        """Extend the online mark of each user that is still marked online, in one round trip;
        returns the users whose mark was gone (expired, cleared, or lost with the server)."""

    async def set_offline(self, user_id: str, last_seen: datetime) -> None:
        """Clear the online mark and record last_seen."""

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{user_id: {"status": "online"|"offline", "last_seen": datetime|None}} for every id, one round trip."""


class Health(Protocol):
    async def ping(self) -> None:
        """Return if the server answers within the timeout, else raise StoreUnavailable."""


@dataclass(frozen=True)
class Verdict:
    """A rate limiter's answer."""
    allowed: bool
    retry_after_ms: int     # 0 when allowed; else at least 1: how long until the same call would be
    remaining: int          # whole tokens (or free slots) left after this call


class RateLimiter(Protocol):
    """Token buckets and counting semaphores shared by every gateway replica.

    Every call is atomic: whatever the number of concurrent callers, replicas or machines, a
    bucket never gives out more than it holds and a semaphore never has more holders than its
    limit. Time is the limiter's own (the store's clock, or one injected for tests), never the
    caller's, so replicas with skewed clocks agree. Keys are opaque; a key unused for longer
    than it takes to refill (or lease) costs nothing. A refusal changes nothing.
    """

    async def take(self, key: str, burst: int, per_s: float, cost: int = 1) -> Verdict:
        """Take ``cost`` tokens from bucket ``key``, which holds at most ``burst`` tokens, starts
        full and refills continuously at ``per_s`` tokens per second. If fewer than ``cost``
        tokens are there, take none and refuse, with ``retry_after_ms`` the time until there will
        be enough. ``1 <= cost <= burst`` and ``per_s > 0``, else ``ValueError``. The same key
        must always be used with the same ``burst`` and ``per_s``."""

    async def give_back(self, key: str, burst: int, per_s: float, amount: int = 1) -> None:
        """Return ``amount`` tokens to bucket ``key``, never filling it above ``burst``: undoes a
        ``take`` for an attempt that turned out to be legitimate."""

    async def hold(self, key: str, holder: str, limit: int, lease_s: float) -> Verdict:
        """Give ``holder`` one of the at most ``limit`` slots of semaphore ``key``. A slot lapses
        ``lease_s`` after it was last held or renewed, so a crashed holder frees it by itself.
        Holding a slot one already has renews it and is allowed. When all slots are taken,
        refuse with ``retry_after_ms`` the time until the first lease lapses, if not renewed."""

    async def renew(self, slots: Sequence[tuple[str, str]], lease_s: float) -> None:
        """Extend, to ``lease_s`` from now, every ``(key, holder)`` slot that has not lapsed, in
        one round trip. A lapsed or released slot is not brought back."""

    async def release(self, key: str, holder: str) -> None:
        """Free ``holder``'s slot of ``key`` now. Idempotent."""
