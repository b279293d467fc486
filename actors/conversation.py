"""Conversation(cid): the single writer of its seq, and of every change to the conversation.

Every change is an event in one log: messages, edits, deletes, reactions, membership, title.
Sends are batched by the mailbox (group commit): the batch is numbered, written with one
ordered insert, and acknowledged only once durable. The store's unique indexes are the
fence: a client_msg_id the dedupe window missed resolves to the stored event, and a seq
another writer holds makes this actor refuse the rest as ``unavailable`` (nothing unstored
was acknowledged; senders retry with the same ids) and reload before its next message.

Projections (the conversation document's members/roles/title/counters, a message's edited
body, tombstone and reactions) are applied after the event is stored, idempotently, and
checkpointed as ``state_seq``; activation replays whatever lies past the checkpoint, so a
crash between the two writes loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Iterable

from push.jobs import message_job
from raychat.errors import ChatError, Conflict, Forbidden, Invalid, NotFound, Unavailable
from raychat.terms import terms as message_terms
from storage.errors import DuplicateEvent, EventRefused, StoreError

from .conversation_state import ConversationState, SendCommand, event_digest, message_draft, number
from . import metrics
from .env import ActorEnv
from .events import dumps, event_frame, utc
from .registry import PassivationReason
from .roster import Roster
from .typing_state import TypingState

log = logging.getLogger(__name__)

_REPLAY_PAGE = 500
UNKNOWN = object()        # ConversationActor._preview before this actor has read or changed it
# Groups above this size space the writes of their conversation document out by 10 ms per
# member, at most 10 s. A write of a 1,000-member document costs SecantusDB ~70 ms of pure-Python
# CPU, and every other request to the store waits for the GIL meanwhile: once a second put a p99
# of 190 ms on acks.
CHECKPOINT_SPACING_FROM = 100
# Smaller ones write it (their list position) at most once a second; the progress document,
# which carries counts, last message and cursors, is written at every flush.
LISTING_GAP_S = 1.0


def checkpoint_gap_s(members: int) -> float:
    """Seconds a conversation of ``members`` waits between two writes of its document, beyond
    the one-second listing gap."""
    return 0.0 if members <= CHECKPOINT_SPACING_FROM else min(10.0, members / 100)


def listing_gap_s(members: int) -> float:
    """Seconds between two writes of a conversation's document (its list position)."""
    return max(LISTING_GAP_S, checkpoint_gap_s(members))


TYPING_TTL_S = 5.0


class ConversationActor:
    batchable: ClassVar[frozenset[str]] = frozenset({"send"})
    __slots__ = ("cid", "_env", "state", "_stale", "_cursors", "_reads", "_progress", "_flusher", "_typing",
                 "_saved_meta", "_listed_at", "_unlisted", "_wake", "_hurry", "_preview")

    def __init__(self, cid: str, env: ActorEnv):
        self.cid = cid
        self._env = env
        self.state: ConversationState | None = None
        self._stale = False
        self._cursors: dict[str, int] | None = None               # read cursors seen while active
        self._reads: dict[str, tuple[int, int]] | None = None     # cursor writes not yet flushed
        self._progress: dict | None = None                       # newest message not yet checkpointed
        self._flusher: asyncio.Task | None = None
        self._typing: TypingState | None = None
        self._saved_meta: int | None = None     # digest of the roster and title last checkpointed
        self._listed_at: float | None = None    # loop time of the last full checkpoint (None: due now)
        # A checkpoint newer than the document's: the newest message not in it yet, or True.
        self._unlisted: dict | bool | None = None
        self._wake: asyncio.Event | None = None  # set to end the flusher's wait for the listing gap
        self._hurry = False                      # passivating: write the document without waiting
        # The list's preview of the newest message (_summary), edits applied, or UNKNOWN: then the
        # store's stands and this actor has not changed it (no memory held while idle).
        self._preview: dict | None | object = UNKNOWN

    # ---- lifecycle -----------------------------------------------------------------------
    async def on_activate(self) -> None:
        env = self._env
        try:
            conv = await env.conversations.get(self.cid)
            if conv is None:
                raise NotFound("no such conversation")
            state_seq = conv.get("state_seq", 0)
            # After the checkpoint, not in parallel with its read: the log is then read from the
            # checkpoint up, not whole (a sorted read of it on SecantusDB costs its length).
            last = await env.events.last_seq(self.cid, at_least=state_seq)
        except StoreError as exc:
            raise Unavailable("store unavailable") from exc
        state = ConversationState(self.cid, Roster(conv["kind"], list(conv["members"]), conv.get("roles") or {}),
                                  state_seq, env.dedupe_window, title=conv.get("title"),
                                  e2ee=bool(conv.get("e2ee")), state_seq=state_seq,
                                  message_count=conv.get("message_count", 0))
        if last > state_seq:
            await self._replay(state)
        self.state = state
        self._stale = False

    async def _replay(self, state: ConversationState) -> None:
        """Events stored past the checkpoint: fold them in and apply their projections again,
        and move each sender's read cursor to their newest message among them (a sender has
        read what they sent): the checkpoint that would have carried it may be what was lost."""
        try:
            after = state.state_seq
            reads: dict[str, tuple[int, int]] = {}
            while True:
                events = await self._env.events.read_after(self.cid, after, _REPLAY_PAGE)
                for ev in events:
                    state.apply(ev)
                    await self._project_message(ev, state.e2ee)
                    if ev["kind"] == "message":
                        reads[ev["sender_id"]] = (ev["seq"], state.message_count)
                        self._preview = _summary(ev)
                    else:
                        await self._revise_preview(ev)
                if events:
                    after = events[-1]["seq"]
                if len(events) < _REPLAY_PAGE:
                    break
            await self._save_progress(state, None, reads or None)
        except StoreError as exc:
            raise Unavailable("store unavailable") from exc

    async def on_passivate(self, reason: PassivationReason) -> None:
        if self._flusher is not None:
            self._hurry = True                   # the document's write is due now
            if self._wake is not None:
                self._wake.set()
            await self._flusher
        await self._flush(full=True)
        self._hurry = False
        self.state = None
        self._cursors = None

    def can_passivate(self) -> bool:
        return not self._reads and self._progress is None and self._flusher is None and not self._typing

    # ---- messages ------------------------------------------------------------------------
    async def handle(self, method: str, arg: Any) -> Any:
        if method == "send":
            result = (await self.handle_batch("send", [arg]))[0]
            if isinstance(result, ChatError):
                raise result
            return result
        await self._refresh_if_stale()
        handler = _HANDLERS.get(method)
        if handler is None:
            raise Invalid(f"unknown conversation method {method!r}")
        return await handler(self, arg)

    async def handle_batch(self, method: str, cmds: list[SendCommand]) -> list[Any]:
        await self._refresh_if_stale()
        state = self.state
        results: list[Any] = [None] * len(cmds)
        news: list[int] = []
        first_of: dict[tuple[str, str], int] = {}   # the same id twice in one batch: one event
        twins: list[tuple[int, int]] = []
        now = self._env.clock.now()
        for i, cmd in enumerate(cmds):
            if cmd.deadline is not None and now > cmd.deadline:
                # Its sender stopped waiting: writing it now would turn their `unavailable`
                # into a lie. They retry with the same id.
                results[i] = Unavailable("overloaded: not accepted, retry", retry_after_ms=500,
                                         ref=cmd.client_msg_id)
                continue
            adm = state.admit(cmd)
            if adm.new is None:
                results[i] = adm.event if adm.event is not None else adm.error
                continue
            if cmd.reply_to is not None and not await self._is_message(cmd.reply_to):
                results[i] = Invalid("reply_to: no such message in this conversation", ref=cmd.client_msg_id)
                continue
            key = (cmd.sender_id, cmd.client_msg_id)
            if key in first_of:
                twins.append((i, first_of[key]))
                continue
            first_of[key] = i
            news.append(i)
        if news:
            written, stored = await self._write([message_draft(cmds[i], e2ee=state.e2ee) for i in news])
            for i, res in zip(news, written):
                results[i] = res
            if stored:
                self._after_messages(stored)
        for i, j in twins:
            res = results[j]
            if isinstance(res, dict) and event_digest(res) != cmds[i].digest():
                res = Conflict("client_msg_id reused with different content", ref=cmds[i].client_msg_id)
            results[i] = res
        return results

    def _after_messages(self, stored: list[dict]) -> None:
        env, state = self._env, self.state
        metrics.MESSAGES_ACCEPTED.inc(len(stored))
        job = None
        if env.push is not None:
            # Rides with the fan-out: each user's host enqueues it for its members who are not
            # online, so a message everyone sees live costs no push work at all.
            job = message_job(self.cid, stored, (), e2ee=state.e2ee,
                              title=state.title if state.kind == "group" else None)
            if not job["messages"]:
                job = None
        env.fanout(state.members, [(self.cid, ev["seq"], event_frame(ev), None) for ev in stored], job)
        # A sender has read what they sent: their own messages never count as unread.
        count = state.message_count - len(stored)
        for ev in stored:
            count += 1
            self._note_read(ev["sender_id"], ev["seq"], count)
        self._progress = stored[-1]
        self._preview = _summary(stored[-1])
        self._schedule_flush()

    async def _is_message(self, seq: int) -> bool:
        try:
            ev = await self._env.events.get(self.cid, seq)
        except StoreError as exc:
            raise Unavailable("store unavailable") from exc
        return ev is not None and ev["kind"] == "message"

    async def _refresh_if_stale(self) -> None:
        if self.state is None or self._stale:
            await self.on_activate()

    async def _write(self, drafts: list[dict]) -> tuple[list[Any], list[dict]]:
        """Store drafts as consecutive events: one result per draft (event or ChatError), and
        the events this call stored, in seq order (folded into the state already)."""
        env, state = self._env, self.state
        out: list[Any] = [None] * len(drafts)
        pending = list(range(len(drafts)))
        stored: list[dict] = []
        created_at = utc(env.clock.now())
        try:
            while pending:
                events = number(self.cid, [drafts[i] for i in pending], state.last_seq + 1, created_at)
                try:
                    await env.events.append(events)
                except DuplicateEvent as dup:
                    self._commit(events[:dup.index], pending[:dup.index], out, stored)
                    bad = pending[dup.index]
                    if dup.key == "client_msg_id":
                        out[bad] = await self._existing(drafts[bad])
                        pending = pending[dup.index + 1:]
                    else:
                        # Another writer holds this seq (placement moved under us): reload
                        # everything before writing again; the senders retry.
                        log.warning("conversation %s: seq %s held by another writer; reloading",
                                    self.cid, events[dup.index]["seq"])
                        raise Unavailable("conversation moved, retry")
                    continue
                except EventRefused as refused:
                    # That one draft cannot be stored (the gateway lets no such text through;
                    # this is the last line): it alone is refused, and the drafts after it, of
                    # other senders too, take its seq and the ones after.
                    self._commit(events[:refused.index], pending[:refused.index], out, stored)
                    bad = pending[refused.index]
                    log.warning("conversation %s: event refused by the store: %s", self.cid, refused)
                    out[bad] = Invalid("the message cannot be stored (is its text valid Unicode?)",
                                       ref=drafts[bad].get("client_msg_id"))
                    pending = pending[refused.index + 1:]
                    continue
                self._commit(events, pending, out, stored)
                pending = []
        except (StoreError, Unavailable):
            # The write's outcome is unknown (or another writer holds the next seq): reload
            # seq, members and projections before the next message.
            self._stale = True
            for i in pending:
                out[i] = Unavailable("store unavailable, nothing was accepted; retry",
                                     ref=drafts[i].get("client_msg_id"))
        return out, stored

    def _commit(self, events: list[dict], idx: list[int], out: list[Any], stored: list[dict]) -> None:
        for ev, i in zip(events, idx):
            # The search terms are stored; no read returns them, and neither does the answer, the
            # fan-out or the dedupe window (they would only cost memory and Ray serialization).
            ev.pop("terms", None)
            out[i] = ev
            self.state.remember(ev)
            self.state.apply(ev)
            stored.append(ev)

    async def _existing(self, draft: dict) -> Any:
        ev = await self._env.events.find_client_msg(self.cid, draft["sender_id"], draft["client_msg_id"])
        if ev is None:  # the index said it exists; it must be readable, else the store is in trouble
            raise Unavailable("store inconsistent, retry")
        self.state.remember(ev)
        if event_digest(ev) != event_digest(draft):
            return Conflict("client_msg_id reused with different content", ref=draft["client_msg_id"])
        return ev

    async def _commit_one_change(self, drafts: list[dict], recipients: Iterable[str]) -> dict:
        """Store non-message events (edits, membership…) and apply their projections before
        answering, so a read right after the answer sees the change. Returns the first event."""
        results, stored = await self._write(drafts)
        for r in results:
            if isinstance(r, ChatError):
                raise r
        try:
            for ev in stored:
                await self._project_message(ev, self.state.e2ee)
                await self._revise_preview(ev)
            await self._save_progress(self.state, None)
        except StoreError:
            self._stale = True    # stored but not projected: activation replays it
            log.warning("conversation %s: projection deferred to next activation", self.cid)
        frames = []
        for ev in stored:
            forget = frozenset(ev["user_ids"]) if ev["kind"] == "member_removed" else None
            frames.append((self.cid, ev["seq"], event_frame(ev), forget))
        self._env.fanout(recipients, frames)
        return results[0]

    async def _project_message(self, ev: dict, e2ee: bool) -> None:
        kind, events = ev["kind"], self._env.events
        if kind == "edit":
            body = ev.get("body")
            # No body: a later delete erased it (a replay after a crash), and the message is gone.
            if body is not None:
                # The edit re-indexes the message from its new body; an e2ee one has no terms.
                await events.edit_message(self.cid, ev["target_seq"], body, ev["created_at"],
                                          None if e2ee else message_terms(body))
        elif kind == "delete":
            # Media first: a crash before the erase replays this delete with the attachments
            # still there to find; erased first, they would be lost and their media kept for good.
            await self._release_media(ev["target_seq"])
            await events.erase_message(self.cid, ev["target_seq"])
        elif kind == "reaction":
            await events.set_reaction(self.cid, ev["target_seq"], ev["sender_id"], ev["emoji"], ev["on"])

    async def _revise_preview(self, ev: dict) -> None:
        """An edit or delete of the newest message changes the list's preview: the new text, or
        none (``deleted``). The preview is read from the store the first time this actor needs it."""
        if ev["kind"] not in ("edit", "delete"):
            return
        if self._preview is UNKNOWN:
            conv = await self._env.conversations.get(self.cid)
            self._preview = (conv or {}).get("last_message")
        preview = self._preview
        if not isinstance(preview, dict) or preview.get("seq") != ev["target_seq"]:
            return
        if ev["kind"] == "delete":
            self._preview = {**preview, "body": None, "deleted": True}
        elif isinstance(ev.get("body"), str):
            self._preview = {**preview, "body": ev["body"][:200]}

    async def _release_media(self, seq: int) -> None:
        """The media of message ``seq`` that no other message of this conversation attaches
        stop being fetchable through it (and, attached nowhere else, are swept with its upload)."""
        media, events = self._env.media, self._env.events
        target = await events.get(self.cid, seq) if media is not None else None
        for media_id in (target or {}).get("attachments") or ():
            if not await events.attached_elsewhere(self.cid, media_id, seq):
                await media.release(media_id, self.cid)

    async def _save_progress(self, state: ConversationState, last_message: dict | None,
                             reads: dict[str, tuple[int, int]] | None = None, *, full: bool | None = None) -> None:
        """Checkpoint into the progress document, and (``full``; by default when the listing gap
        has passed) into the conversation document, which sets the list position."""
        r = state.roster
        # The preview goes with every checkpoint, edits and deletes applied: reads take the newer
        # checkpoint of two documents whole, so one that lacked it showed an older preview.
        progress: dict[str, Any] = {
            "state_seq": state.last_seq, "last_seq": state.last_seq, "message_count": state.message_count,
            "last_message": None if self._preview is UNKNOWN else self._preview,
            "last_activity_at": last_message["created_at"] if last_message else None,
        }
        # The roster and title are written only when they changed since this actor's last
        # checkpoint: a message does not rewrite a 1,000-member array. They go in full.
        meta = hash((frozenset(r.members), frozenset(r.roles.items()), state.title))
        if meta != self._saved_meta:
            progress.update(members=r.members, roles=dict(r.roles), title=state.title)
            full = True
        now = asyncio.get_running_loop().time()
        if full is None:
            full = self._hurry or self._listed_at is None or now - self._listed_at >= listing_gap_s(len(r.members))
        if full and last_message is None and isinstance(self._unlisted, dict):
            # The trailing write of a burst: the list position of the newest message the document lacks.
            progress["last_activity_at"] = self._unlisted["created_at"]
        await self._env.conversations.save_progress(self.cid, progress, reads, full=full)
        self._saved_meta = meta
        if full:
            self._listed_at, self._unlisted = now, None
        else:
            self._unlisted = last_message or self._unlisted or True

    # ---- changes to messages ---------------------------------------------------------------
    async def _target(self, seq: int) -> dict:
        try:
            ev = await self._env.events.get(self.cid, seq)
        except StoreError as exc:
            raise Unavailable("store unavailable") from exc
        if ev is None or ev["kind"] != "message":
            raise NotFound("no such message")
        if ev.get("deleted"):
            raise NotFound("message was deleted")
        return ev

    def _member(self, user: str) -> None:
        if not self.state.is_member(user):
            raise Forbidden("not a member of this conversation")

    async def _edit(self, a: dict) -> dict | None:
        self._member(a["user"])
        target = await self._target(a["target_seq"])
        if target["sender_id"] != a["user"]:
            raise Forbidden("only the sender edits a message")
        if target.get("body") == a["body"]:
            return None      # the text it has already (edits are applied to it): no event
        draft = {"kind": "edit", "sender_id": a["user"], "client_msg_id": None, "target_seq": a["target_seq"],
                 "body": a["body"]}
        return await self._commit_one_change([draft], self.state.members)

    async def _delete(self, a: dict) -> dict:
        self._member(a["user"])
        target = await self._target(a["target_seq"])
        if target["sender_id"] != a["user"] and self.state.roster.role(a["user"]) not in ("owner", "admin"):
            raise Forbidden("only the sender, an owner or an admin deletes a message")
        draft = {"kind": "delete", "sender_id": a["user"], "client_msg_id": None, "target_seq": a["target_seq"]}
        return await self._commit_one_change([draft], self.state.members)

    async def _react(self, a: dict) -> dict | None:
        self._member(a["user"])
        target = await self._target(a["target_seq"])
        has = any(r["emoji"] == a["emoji"] and r["user_id"] == a["user"] for r in target.get("reactions") or ())
        if has == a["on"]:
            return None      # one reaction per user per emoji: nothing changes, no event
        draft = {"kind": "reaction", "sender_id": a["user"], "client_msg_id": None, "target_seq": a["target_seq"],
                 "emoji": a["emoji"], "on": a["on"]}
        return await self._commit_one_change([draft], self.state.members)

    # ---- changes to the conversation ---------------------------------------------------------
    async def _add_members(self, a: dict) -> dict | None:
        new = self.state.roster.check_add(a["user"], a["user_ids"], self._env.max_group_members)
        if not new:
            return None
        draft = {"kind": "member_added", "sender_id": a["user"], "client_msg_id": None, "user_ids": new}
        return await self._commit_one_change([draft], self.state.members | set(new))

    async def _remove_member(self, a: dict) -> dict:
        before = self.state.members
        promotions = self.state.roster.check_remove(a["user"], a["target"])
        drafts = [{"kind": "member_removed", "sender_id": a["user"], "client_msg_id": None,
                   "user_ids": [a["target"]]}]
        drafts += [{"kind": "role_changed", "sender_id": a["user"], "client_msg_id": None,
                    "user_ids": [u], "role": role} for u, role in promotions]
        return await self._commit_one_change(drafts, before)

    async def _set_role(self, a: dict) -> dict | None:
        changes = self.state.roster.check_role(a["user"], a["target"], a["role"])
        if not changes:
            return None
        drafts = [{"kind": "role_changed", "sender_id": a["user"], "client_msg_id": None,
                   "user_ids": [u], "role": role} for u, role in changes]
        return await self._commit_one_change(drafts, self.state.members)

    async def _rename(self, a: dict) -> dict | None:
        self.state.roster.check_rename(a["user"])
        if a["title"] == self.state.title:
            return None
        draft = {"kind": "title_changed", "sender_id": a["user"], "client_msg_id": None, "title": a["title"]}
        return await self._commit_one_change([draft], self.state.members)

    async def _members(self, a: Any) -> list[str]:
        return self.state.roster.members

    # ---- read cursors and typing (ephemeral: receipts and typing frames carry seq 0) ---------
    async def _read(self, a: dict) -> int:
        user, seq = a["user"], a["seq"]
        self._member(user)
        if not 0 <= seq <= self.state.last_seq:
            raise Invalid("seq: beyond the conversation's last seq")
        # Messages read = all ever sent minus those after the cursor: retention deletes old
        # events, never new ones, so this stays right where counting up to seq would not.
        count = self.state.message_count if seq == self.state.last_seq else \
            self.state.message_count - await self._env.events.count_messages_after(self.cid, seq)
        if self._note_read(user, seq, count):
            # To the reader too: their other devices learn what was read here (unread badges
            # follow across phone and laptop), as the other members learn it.
            frame = dumps({"type": "receipt", "conversation_id": self.cid, "user_id": user, "seq": seq})
            self._env.fanout(self.state.members, [(self.cid, 0, frame, None)])
        return seq

    def _note_read(self, user: str, seq: int, count: int) -> bool:
        """Queue a cursor write; False if the cursor would not move forward."""
        if self._cursors is None:
            self._cursors = {}
        if self._cursors.get(user, -1) >= seq:
            return False
        self._cursors[user] = seq
        if self._reads is None:
            self._reads = {}
        self._reads[user] = (seq, count)
        self._schedule_flush()
        return True

    # ---- checkpoints: coalesced, at most one write of each kind in flight -------------------
    def _schedule_flush(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        elif self._wake is not None:
            self._wake.set()                     # new progress: no waiting for the listing gap

    async def _flush_loop(self) -> None:
        """Whatever piles up while one write is in flight goes in the next one: under load a
        conversation writes one checkpoint (with its cursors) per store round trip, not one
        per message. Those go to the progress document; the conversation document (the list
        position) is written at most once per ``listing_gap_s``, because each of its writes
        re-indexes every member (SecantusDB rewrites all of a document's index entries). The
        last checkpoint of a burst reaches it once the gap has passed. Activation replays what
        a checkpoint missed; list positions lag by at most the gap."""
        loop = asyncio.get_running_loop()
        try:
            while self.state is not None:
                if self._progress is not None or self._reads:
                    await self._flush()
                    continue
                if self._unlisted is None:
                    break
                if self._listed_at is not None and not self._hurry:
                    wait = self._listed_at + listing_gap_s(len(self.state.members)) - loop.time()
                    if wait > 0:
                        self._wake = asyncio.Event()
                        try:
                            await asyncio.wait_for(self._wake.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                        finally:
                            self._wake = None
                        continue
                await self._flush(full=True)
        finally:
            self._flusher = None

    async def _flush(self, full: bool | None = None) -> None:
        """Write what is pending; ``full`` also writes the conversation document (passivation,
        and the end of a listing gap), even with no new progress."""
        progress, self._progress = self._progress, None
        reads, self._reads = self._reads, None
        try:
            if self.state is not None and (progress is not None or (full and self._unlisted is not None)):
                await self._save_progress(self.state, progress, reads, full=full)
            elif reads:
                await self._env.conversations.set_reads(self.cid, reads)
        except StoreError as exc:
            # Both writes are idempotent and monotonic: the next flush (or an activation's
            # replay, for the checkpoint) makes up for this one.
            log.warning("conversation %s: checkpoint deferred: %r", self.cid, exc)
            await asyncio.sleep(1.0)
            if progress is not None and self._progress is None:
                self._progress = progress
            if reads:
                self._reads = {**reads, **(self._reads or {})}

    async def _typing_frame(self, a: dict) -> None:
        user, on = a["user"], a["on"]
        self._member(user)
        if self._typing is None:
            self._typing = TypingState(TYPING_TTL_S)
        now = self._env.clock.monotonic()
        if self._typing.update(user, on, now):
            self._send_typing(user, on)
        if on:
            self._env.call_later(TYPING_TTL_S + 0.05, "conv", self.cid, "typing_expire", None)

    async def _typing_expire(self, a: Any) -> None:
        if self._typing is None:
            return
        for user in self._typing.expire(self._env.clock.monotonic()):
            self._send_typing(user, False)
        if not self._typing:
            self._typing = None

    def _send_typing(self, user: str, on: bool) -> None:
        frame = dumps({"type": "typing", "conversation_id": self.cid, "user_id": user, "on": on})
        self._env.fanout(self.state.members - {user}, [(self.cid, 0, frame, None)])


def _summary(ev: dict) -> dict:
    body = ev.get("body")
    return {"seq": ev["seq"], "sender_id": ev["sender_id"], "kind": ev["kind"],
            "body": body[:200] if isinstance(body, str) else None, "created_at": ev["created_at"]}


_HANDLERS = {
    "members": ConversationActor._members,
    "edit": ConversationActor._edit,
    "delete": ConversationActor._delete,
    "react": ConversationActor._react,
    "add_members": ConversationActor._add_members,
    "remove_member": ConversationActor._remove_member,
    "set_role": ConversationActor._set_role,
    "rename": ConversationActor._rename,
    "read": ConversationActor._read,
    "typing": ConversationActor._typing_frame,
    "typing_expire": ConversationActor._typing_expire,
}
