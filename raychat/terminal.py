"""``raychat chat``: a terminal chat client on the SDK (raychat/client.py).

Commands are parsed (``parse_command``) and frames rendered (``render_*``) by pure functions; the
``ChatApp`` moves lines between them, the SDK and the terminal. Input is read by a thread (plain
``input()``, with readline's line editing when it is a terminal), so no extra dependency is
needed. Lines that arrive while the user types are printed above the prompt, and the half-typed
line is drawn again below them.

Line-based input cannot see keystrokes, so this client shows other people's typing but never
sends its own.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, TextIO

from raychat.client import ApiError, Client, Connection, SessionClosed

HISTORY_PAGE = 20

HELP = """\
commands:
  /list                   your conversations, most recent first, with unread counts
  /open <n|id>            open conversation n of the last /list (or by its id) and show recent history
  /new @user              open the direct conversation with a user
  /group <title> @a @b…   create a group with these users and open it
  /history [n]            show n older messages of the open conversation (default 20)
  /help                   this text
  /quit                   leave (Ctrl-D too)
anything else is sent to the open conversation ("//text" sends "/text")"""


# ---- commands (pure) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    name: str                                   # list, open, new, group, history, help, quit, say, noop, error
    arg: str = ""                               # the conversation for open, the text for say, the message for error
    users: tuple[str, ...] = ()                 # usernames for new and group, without the @
    count: int = HISTORY_PAGE


def parse_command(line: str) -> Command:
    """One line typed by the user."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return Command("noop")
    if text.startswith("//"):
        return Command("say", text[1:])
    if not text.startswith("/"):
        return Command("say", text)
    word, _, rest = text[1:].partition(" ")
    rest = rest.strip()
    words = rest.split()
    if word in ("list", "help", "quit", "exit") and not words:
        return Command("quit" if word == "exit" else word)
    if word == "open" and len(words) == 1:
        return Command("open", words[0])
    if word == "history" and len(words) <= 1:
        if not words:
            return Command("history")
        if words[0].isdigit() and 1 <= int(words[0]) <= 200:
            return Command("history", count=int(words[0]))
        return Command("error", "/history takes a number of messages, 1-200")
    if word == "new":
        if len(words) == 1 and _is_mention(words[0]):
            return Command("new", users=(words[0][1:],))
        return Command("error", "usage: /new @user")
    if word == "group":
        title = " ".join(w for w in words if not _is_mention(w))
        users = tuple(w[1:] for w in words if _is_mention(w))
        if title and users and all(not _is_mention(w) for w in words[:len(title.split())]):
            return Command("group", title, users=users)
        return Command("error", "usage: /group <title> @user [@user…] (the title first)")
    if word in ("list", "open", "help", "quit", "exit", "history"):
        return Command("error", f"usage: see /help for /{word}")
    return Command("error", f"unknown command /{word}; /help lists them")


def _is_mention(word: str) -> bool:
    return word.startswith("@") and len(word) > 1


# ---- rendering (pure) ----------------------------------------------------------------------------

Names = dict[str, str]      # user_id -> username


def clock_time(stamp: str | None) -> str:
    """HH:MM of an ISO 8601 UTC time, in local time."""
    if not stamp:
        return "--:--"
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%H:%M")
    except ValueError:
        return "--:--"


def name_of(user_id: str | None, names: Names) -> str:
    return names.get(user_id or "", user_id or "?")


def conversation_title(conv: dict[str, Any], names: Names, me: str) -> str:
    if conv.get("kind") == "direct":
        others = [m for m in conv.get("members", []) if m != me] or [me]
        return "@" + name_of(others[0], names)
    return conv.get("title") or conv.get("conversation_id", "?")


def render_conversation_list(convs: list[dict[str, Any]], names: Names, me: str) -> list[str]:
    if not convs:
        return ["(no conversations yet: /new @user or /group <title> @a @b)"]
    lines = []
    for i, conv in enumerate(convs, 1):
        unread = conv.get("unread_count") or 0
        line = f"{i:>3}. {conversation_title(conv, names, me)}"
        if conv.get("kind") == "group":
            line += f" ({len(conv.get('members', []))} members)"
        if unread:
            line += f"  [{unread} unread]"
        last = conv.get("last_message")
        if last and last.get("kind") == "message":
            body = (last.get("body") or "").replace("\n", " ")
            line += f"  — {name_of(last.get('sender_id'), names)}: {body[:60]}"
        lines.append(line)
    return lines


def render_event(ev: dict[str, Any], names: Names) -> str:
    """One conversation event (or stored message) as a line: ``[HH:MM] alice: hi``."""
    who = name_of(ev.get("sender_id"), names)
    kind = ev.get("kind")
    stamp = f"[{clock_time(ev.get('created_at'))}]"
    target = f"#{ev.get('target_seq')}"
    if kind == "message":
        if ev.get("deleted"):
            return f"{stamp} {who}: (deleted)"
        text = (ev.get("body") or "").replace("\n", "\n        ")
        extra = ""
        if ev.get("reply_to"):
            extra += f" ↪#{ev['reply_to']}"
        if ev.get("attachments"):
            extra += f" [{len(ev['attachments'])} attachment(s)]"
        if ev.get("edited_at"):
            extra += " (edited)"
        reactions = ev.get("reactions") or {}
        if reactions:
            extra += " " + " ".join(f"{e}{n}" for e, n in reactions.items())
        return f"{stamp} {who}: {text}{extra}"
    if kind == "edit":
        return f"{stamp} {who} edited {target}: {ev.get('body', '')}"
    if kind == "delete":
        return f"{stamp} {who} deleted {target}"
    if kind == "reaction":
        return f"{stamp} {who} {'reacted' if ev.get('on', True) else 'took back'} {ev.get('emoji')} on {target}"
    users = ", ".join(name_of(u, names) for u in ev.get("user_ids") or ())
    if kind == "member_added":
        return f"{stamp} {who} added {users}"
    if kind == "member_removed":
        return f"{stamp} {users} left" if ev.get("user_ids") == [ev.get("sender_id")] else \
            f"{stamp} {who} removed {users}"
    if kind == "role_changed":
        return f"{stamp} {who} made {users} {ev.get('role')}"
    if kind == "title_changed":
        return f"{stamp} {who} renamed the conversation to “{ev.get('title')}”"
    return f"{stamp} {who}: ({kind})"


def render_history(messages_newest_first: list[dict[str, Any]], names: Names) -> list[str]:
    return [render_event(m, names) for m in reversed(messages_newest_first)]


def render_signal(frame: dict[str, Any], names: Names, me: str) -> str | None:
    """A typing, presence or error frame as a line; None for what is not worth a line."""
    kind = frame.get("type")
    if kind == "typing":
        if frame.get("on") and frame.get("user_id") != me:
            return f"{name_of(frame.get('user_id'), names)} is typing…"
        return None
    if kind == "presence":
        who = name_of(frame.get("user_id"), names)
        if frame.get("status") == "online":
            return f"* {who} is online"
        seen = frame.get("last_seen")
        return f"* {who} is offline" + (f" (last seen {clock_time(seen)})" if seen else "")
    if kind == "error":
        return f"! {frame.get('code')}: {frame.get('message', '')}"
    return None


def render_error(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"! {exc.code}: {exc.message}"
    return f"! {type(exc).__name__}: {exc}"


# ---- the terminal --------------------------------------------------------------------------------

class Terminal:
    """Lines out, lines in. Interactive, a line printed while the user types goes above the
    prompt, and the prompt is drawn again with what was typed so far (readline keeps it)."""

    def __init__(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, prompt: str = "> "):
        self.stdin, self.stdout = stdin, stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self.prompt = prompt if self.interactive else ""
        self._readline = None
        if self.interactive:
            try:
                import readline     # line editing and history for input(); absent on some builds
                self._readline = readline
            except ImportError:
                pass
        self._lock = threading.Lock()
        self._prompting = False         # the input thread is inside input(): a prompt is on screen

    def print(self, line: str) -> None:
        with self._lock:
            if self.interactive and self._prompting:
                typed = self._readline.get_line_buffer() if self._readline else ""
                self.stdout.write(f"\r\x1b[K{line}\n{self.prompt}{typed}")
            else:
                self.stdout.write(line + "\n")
            self.stdout.flush()

    def read_line(self) -> str | None:
        """One line (blocking, for a thread); None at end of input."""
        if self.interactive:
            self._prompting = True
            try:
                return input(self.prompt)
            except EOFError:
                return None
            finally:
                self._prompting = False
        line = self.stdin.readline()
        return line.rstrip("\n") if line else None

    def start_reader(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
        """A daemon thread feeds typed lines into a queue (None at the end): input() blocks, and
        a daemon thread does not keep the process alive on /quit."""
        lines: asyncio.Queue = asyncio.Queue()

        def pump() -> None:
            while True:
                line = self.read_line()
                loop.call_soon_threadsafe(lines.put_nowait, line)
                if line is None:
                    return

        threading.Thread(target=pump, name="raychat-input", daemon=True).start()
        return lines


# ---- the app -------------------------------------------------------------------------------------

Confirm = Callable[[str], Awaitable[bool]]


async def sign_in(client: Client, username: str, password: str, confirm: Confirm) -> str:
    """Log in; if that fails, offer to register the name (the server does not say whether the
    user exists or the password is wrong, so registering is how to find out)."""
    try:
        await client.login(username, password)
        return "logged in"
    except ApiError as exc:
        if exc.code != "unauthorized":
            raise
    if not await confirm(f"No account {username!r} with this password. Create it? [y/N] "):
        raise ApiError("unauthorized", 401, "wrong username or password")
    try:
        await client.register(username, password)
    except ApiError as exc:
        if exc.code == "conflict":
            raise ApiError("unauthorized", 401, f"wrong password for {username!r}") from None
        raise
    await client.login(username, password)
    return "registered and logged in"


@dataclass
class ChatApp:
    client: Client
    conn: Connection
    term: Terminal
    names: Names = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    listed: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    oldest_shown: int | None = None     # the oldest seq the open conversation's history has shown

    @property
    def me(self) -> str:
        return self.client.user_id or ""

    async def run(self, lines: asyncio.Queue) -> None:
        pumps = [asyncio.ensure_future(self._events()), asyncio.ensure_future(self._signals())]
        try:
            while True:
                line = await lines.get()
                if line is None:
                    return
                cmd = parse_command(line)
                if cmd.name == "quit":
                    return
                try:
                    await self.do(cmd)
                except (ApiError, SessionClosed) as exc:
                    self.term.print(render_error(exc))
        finally:
            for p in pumps:
                p.cancel()

    async def do(self, cmd: Command) -> None:
        if cmd.name == "noop":
            return
        if cmd.name == "help":
            for line in HELP.splitlines():
                self.term.print(line)
        elif cmd.name == "error":
            self.term.print(f"! {cmd.arg}")
        elif cmd.name == "list":
            page = await self.client.conversations(limit=50)
            self.listed = page["conversations"]
            await self._learn_names(m for c in self.listed for m in c["members"])
            await self._learn_names(c["last_message"]["sender_id"] for c in self.listed if c.get("last_message"))
            for c in self.listed:
                self.titles[c["conversation_id"]] = conversation_title(c, self.names, self.me)
            for line in render_conversation_list(self.listed, self.names, self.me):
                self.term.print(line)
        elif cmd.name == "open":
            await self.open(await self._find(cmd.arg))
        elif cmd.name == "new":
            other = await self.client.user_by_name(cmd.users[0])
            await self.open(await self.client.create_direct(other["user_id"]))
        elif cmd.name == "group":
            ids = [(await self.client.user_by_name(u))["user_id"] for u in cmd.users]
            await self.open(await self.client.create_group(cmd.arg, ids))
        elif cmd.name == "history":
            await self.history(cmd.count)
        elif cmd.name == "say":
            if self.current is None:
                self.term.print("! no conversation open: /list, then /open <n>")
                return
            asyncio.ensure_future(self._send(self.current["conversation_id"], cmd.arg))

    async def _find(self, target: str) -> dict[str, Any]:
        if target.isdigit():
            n = int(target)
            if not 1 <= n <= len(self.listed):
                raise ApiError("invalid", None, f"no conversation {n} in the last /list")
            target = self.listed[n - 1]["conversation_id"]
        return await self.client.conversation(target)

    async def open(self, conv: dict[str, Any]) -> None:
        """Show the recent history up to the conversation's ``last_seq``, then follow it from
        there: what comes later arrives live (or replayed by ``track``), never twice."""
        cid, last = conv["conversation_id"], conv["last_seq"]
        await self._learn_names(conv["members"])
        self.current = conv
        self.titles[cid] = title = conversation_title(conv, self.names, self.me)
        page = await self.client.history(cid, before_seq=last + 1, limit=HISTORY_PAGE) if last else \
            {"messages": [], "has_more": False}
        await self._learn_names(m["sender_id"] for m in page["messages"])
        self.term.print(f"— {title} —" + ("  (/history for older)" if page["has_more"] else ""))
        for line in render_history(page["messages"], self.names):
            self.term.print(line)
        self.oldest_shown = page["messages"][-1]["seq"] if page["messages"] else None
        await self.conn.track(cid, last)
        if last:
            await self.conn.read(cid, last)

    async def history(self, count: int) -> None:
        if self.current is None:
            self.term.print("! no conversation open")
            return
        if self.oldest_shown is None or self.oldest_shown <= 1:
            self.term.print("(no earlier messages)")
            return
        page = await self.client.history(self.current["conversation_id"], before_seq=self.oldest_shown, limit=count)
        if not page["messages"]:
            self.term.print("(no earlier messages)")
            return
        await self._learn_names(m["sender_id"] for m in page["messages"])
        self.term.print("— earlier —")
        for line in render_history(page["messages"], self.names):
            self.term.print(line)
        self.oldest_shown = page["messages"][-1]["seq"]

    async def _send(self, cid: str, text: str) -> None:
        try:
            await self.conn.send(cid, text, client_msg_id=uuid.uuid4().hex)
        except (ApiError, SessionClosed) as exc:
            self.term.print(f"! not sent ({render_error(exc)[2:]}): {text[:40]}")

    async def _events(self) -> None:
        try:
            async for ev in self.conn.events():
                await self._learn_names([ev.get("sender_id"), *(ev.get("user_ids") or ())])
                line = render_event(ev, self.names)
                cid = ev["conversation_id"]
                if self.current is not None and cid == self.current["conversation_id"]:
                    self.term.print(line)
                    if ev.get("sender_id") != self.me:
                        await self.conn.read(cid, ev["seq"])
                else:
                    self.term.print(f"[{await self._title(cid)}] {line}")
        except (ApiError, SessionClosed) as exc:
            self.term.print(f"! disconnected: {render_error(exc)[2:]}")

    async def _signals(self) -> None:
        async for frame in self.conn.signals():
            await self._learn_names([frame.get("user_id")])
            line = render_signal(frame, self.names, self.me)
            if line is None:
                continue
            cid = frame.get("conversation_id")
            if cid and (self.current is None or cid != self.current["conversation_id"]):
                line = f"[{await self._title(cid)}] {line}"
            self.term.print(line)

    async def _title(self, cid: str) -> str:
        if cid not in self.titles:
            try:
                conv = await self.client.conversation(cid)
                await self._learn_names(conv["members"])
                self.titles[cid] = conversation_title(conv, self.names, self.me)
            except ApiError:
                return cid
        return self.titles[cid]

    async def _learn_names(self, user_ids) -> None:
        for uid in {u for u in user_ids if u and u not in self.names}:
            try:
                self.names[uid] = (await self.client.user(uid))["username"]
            except ApiError:
                self.names[uid] = uid


async def run_chat(server: str, username: str, password: str, term: Terminal, *, confirm: Confirm) -> int:
    async with Client(server) as client:
        try:
            how = await sign_in(client, username, password, confirm)
        except ApiError as exc:
            term.print(render_error(exc))
            return 1
        try:
            me = await client.me()
            term.print(f"{how} as {me['username']} ({me['user_id']}); /help lists the commands")
            async with client.connect() as conn:
                term.print("connected")
                app = ChatApp(client, conn, term)
                app.names[me["user_id"]] = me["username"]
                await app.run(term.start_reader(asyncio.get_running_loop()))
        except (ApiError, SessionClosed) as exc:
            term.print(render_error(exc))
            return 1
        finally:
            # This client keeps no session on disk, so its refresh token is of no further use.
            try:
                await client.logout()
            except Exception:
                pass
    return 0
