"""The web client in a real browser: headless Chromium driven by Playwright, against the session
raychat (Ray, Serve, the gateway and the real stores).

Two browser contexts are two people with their own sessionStorage: they sign up, start a direct
and a group conversation, see each other's messages, typing and presence live, read history
after a reload and scroll back through it, and see the image the other one sent. The main views
are saved to docs/screenshots/ for the README.

The browser is the system's Chromium (Debian's ``chromium`` package; .ci/run installs it),
launched by its path: Playwright's own browser download needs the internet. Without it these
tests are skipped, and ``pytest -ra`` says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
try:
    from playwright.sync_api import expect, sync_playwright
    HAVE_PLAYWRIGHT = True
except ImportError:             # the `test` extra brings it; say so rather than fail to collect
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not HAVE_CHROMIUM, reason=f"Chromium not found at {CHROMIUM}: apt-get install chromium"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="the playwright package is missing: pip install -e '.[test]'"),
]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"
VIEWPORT = {"width": 1100, "height": 680}
WAIT_MS = 15_000                # a 2-core machine running Ray and the stores can be slow to answer


def png(width: int, height: int) -> bytes:
    """A real PNG (a sky over a hill, for the screenshot), made here so no binary test file is needed."""
    def pixel(x: int, y: int) -> bytes:
        if y > height * 0.62 + 18 * ((x / width - 0.45) ** 2 * 4 - 0.5):
            return bytes((46, 125 + y % 7, 70))                              # hill
        return bytes((90 + y // 3, 150 + y // 4, 235))                       # sky, lighter towards the hill

    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:5]}"


@pytest.fixture(scope="module")
def browser():
    expect.set_options(timeout=WAIT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Chromium's sandbox cannot start as root (CI runs as root); headless it has no other use here.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


class Person:
    """One browser context (its own cookies and sessionStorage) with one tab on the client."""

    def __init__(self, browser, base_url: str, username: str, socket_route=None):
        self.username = username
        self.context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
        self.page = self.context.new_page()
        if socket_route is not None:        # sees (and may cut) the client's WebSockets
            self.page.route_web_socket(re.compile(r"/v1/ws$"), socket_route)
        # Uncaught exceptions and console errors (a CSP refusal is one). Not the line Chromium logs
        # for each HTTP error answer: some tests ask for those (a wrong password is a 401).
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        self.page.goto(base_url + "/")
        expect(self.page.locator("#login-form")).to_be_visible()

    def enter(self, register: bool) -> None:
        p = self.page
        p.fill("#login-username", self.username)
        p.fill("#login-password", PASSWORD)
        p.click("#register-submit" if register else "#login-submit")
        expect(p.locator("#chat-app")).to_be_visible()
        expect(p.locator("#me")).to_have_text("@" + self.username)

    def item(self, text: str):
        """The conversation list entry whose name contains ``text``."""
        return self.page.locator("#conversation-list li").filter(has=self.page.locator(".conv-name", has_text=text))

    def open(self, text: str) -> None:
        self.item(text).locator("button").click()
        expect(self.page.locator("#chat-title")).to_contain_text(text)

    def say(self, text: str) -> None:
        self.page.fill("#composer-text", text)
        self.page.press("#composer-text", "Enter")

    def start(self, usernames: str, title: str = "") -> None:
        p = self.page
        p.click("#new-conversation summary")
        p.fill("#new-usernames", usernames)
        p.fill("#new-title", title)
        p.click("#new-submit")

    def messages(self):
        return self.page.locator("#messages .msg:not(.pending)")

    def close(self) -> None:
        assert self.errors == [], f"{self.username}'s page threw: {self.errors}"
        self.context.close()


@pytest.fixture
def people(browser, raychat):
    made: list[Person] = []

    def make(prefix: str, username: str | None = None, socket_route=None) -> Person:
        made.append(Person(browser, raychat.base_url, username or name(prefix), socket_route))
        return made[-1]

    yield make
    for person in made:
        person.close()


def api_user(http: httpx.Client, username: str) -> dict:
    r = http.post("/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = http.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def test_two_people_sign_up_and_chat_live(people):
    alice, bob = people("alice"), people("bob")
    alice.page.screenshot(path=SCREENSHOTS / "login.png")
    alice.enter(register=True)
    bob.enter(register=True)

    # A direct conversation by username, then a group with a title.
    alice.start(bob.username)
    expect(alice.page.locator("#chat-title")).to_have_text(bob.username)
    alice.say("Hi Bob! Are we still on for Saturday?")
    expect(alice.messages()).to_have_count(1)
    alice.start(bob.username, title="Weekend plans")
    expect(alice.page.locator("#chat-title")).to_have_text("Weekend plans")
    alice.say("I'll bring the map.")

    # Bob, with nothing open, sees both arrive with their unread counts, and Alice online.
    expect(bob.item(alice.username).locator(".badge")).to_have_text("1")
    expect(bob.item("Weekend plans").locator(".badge")).to_have_text("1")
    expect(bob.item(alice.username).locator(".dot.online")).to_have_count(1)
    expect(bob.item(alice.username).locator(".conv-last")).to_have_text("Hi Bob! Are we still on for Saturday?")
    bob.page.screenshot(path=SCREENSHOTS / "conversations.png")

    bob.open(alice.username)
    expect(bob.messages()).to_have_count(1)
    expect(bob.messages().first).to_contain_text("Hi Bob!")
    expect(bob.item(alice.username).locator(".badge")).to_have_count(0)       # read once shown
    expect(bob.page.locator("#chat-status")).to_have_text("online")

    # Alice goes back to the direct conversation: Bob is online, typing, then his answer arrives.
    alice.open(bob.username)
    expect(alice.page.locator("#chat-status")).to_have_text("online")
    bob.page.locator("#composer-text").press_sequentially("Yes, 10am", delay=20)
    expect(alice.page.locator("#typing")).to_have_text(f"{bob.username} is typing…")
    bob.page.press("#composer-text", "Enter")
    expect(alice.messages()).to_have_count(2)
    expect(alice.messages().last).to_contain_text("Yes, 10am")
    expect(alice.page.locator("#typing")).to_have_text("")
    expect(bob.messages()).to_have_count(2)        # his own, confirmed by the server's event

    # A reload keeps the session (sessionStorage) and the open conversation, and shows history.
    alice.page.reload()
    expect(alice.page.locator("#chat-title")).to_have_text(bob.username)
    expect(alice.messages()).to_have_count(2)
    expect(alice.messages().nth(0)).to_contain_text("Are we still on for Saturday?")
    expect(alice.messages().nth(1)).to_contain_text("Yes, 10am")
    # ...and the socket after the reload is live: a new message still arrives without one.
    bob.say("See you there")
    expect(alice.messages()).to_have_count(3)


def test_history_scrolls_back_and_read_state_survives_a_reload(people, raychat):
    bob = people("bob")
    with httpx.Client(base_url=raychat.base_url, timeout=30) as http:
        carol = api_user(http, name("carol"))
        me = api_user(http, bob.username)
        auth = {"Authorization": f"Bearer {carol['access_token']}"}
        r = http.post("/v1/conversations", headers=auth, json={"kind": "direct", "members": [me["user_id"]]})
        assert r.status_code == 201, r.text
        cid = r.json()["conversation_id"]
        for i in range(1, 46):          # a page is 30: this is one full page and part of another
            r = http.post(f"/v1/conversations/{cid}/messages", headers=auth,
                          json={"client_msg_id": f"k{i}", "body": f"message {i}"})
            assert r.status_code == 201, r.text

    bob.enter(register=False)
    item = bob.page.locator("#conversation-list li").first
    expect(item.locator(".badge")).to_have_text("45")
    item.locator("button").click()
    expect(bob.messages()).to_have_count(30)
    expect(bob.page.locator('#messages .msg[data-seq="45"]')).to_be_in_viewport()
    expect(bob.page.locator('#messages .msg[data-seq="1"]')).to_have_count(0)
    expect(item.locator(".badge")).to_have_count(0)

    bob.page.locator("#scroller").evaluate("s => { s.scrollTop = 0; }")
    expect(bob.messages()).to_have_count(45)
    expect(bob.page.locator("#older")).to_be_hidden()          # nothing older left
    seqs = bob.messages().evaluate_all("ms => ms.map(m => Number(m.dataset.seq))")
    assert seqs == list(range(1, 46))
    # The older page went in above what was on screen: the reader was not thrown to the top.
    expect(bob.page.locator('#messages .msg[data-seq="16"]')).to_be_in_viewport()
    expect(bob.page.locator('#messages .msg[data-seq="1"]')).not_to_be_in_viewport()

    # The read cursor went to the server: after a reload the conversation is still read.
    bob.page.reload()
    expect(bob.messages()).to_have_count(30)
    expect(bob.page.locator("#conversation-list li").first.locator(".badge")).to_have_count(0)


def test_an_image_one_sends_the_other_sees(people, tmp_path):
    alice, bob = people("alice"), people("bob")
    alice.enter(register=True)
    bob.enter(register=True)
    alice.start(bob.username)
    alice.say("Here is the trail")
    bob.open(alice.username)
    expect(bob.messages()).to_have_count(1)

    picture = tmp_path / "trail.png"
    picture.write_bytes(png(320, 180))
    alice.page.set_input_files("#composer-file", str(picture))
    expect(alice.page.locator("#messages .msg.pending")).to_have_count(0)       # uploaded and acknowledged

    image = bob.page.locator("#messages img.image")
    expect(image).to_have_count(1)
    bob.page.wait_for_function(
        "() => { const i = document.querySelector('#messages img.image'); return i && i.complete && i.naturalWidth > 0 }",
        timeout=WAIT_MS)
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [320, 180]
    bob.say("Looks great!")
    expect(alice.messages()).to_have_count(3)
    bob.page.screenshot(path=SCREENSHOTS / "chat.png")

    # After a reload the image comes back from history, through a fresh URL.
    alice.page.reload()
    alice.page.wait_for_function(
        "() => { const i = document.querySelector('#messages img.image'); return i && i.complete && i.naturalWidth > 0 }",
        timeout=WAIT_MS)


def wait_until(page, check, what: str, timeout_s: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        page.wait_for_timeout(100)


def direct_with(http: httpx.Client, sender: dict, other: dict) -> str:
    r = http.post("/v1/conversations", headers={"Authorization": f"Bearer {sender['access_token']}"},
                  json={"kind": "direct", "members": [other["user_id"]]})
    assert r.status_code == 201, r.text
    return r.json()["conversation_id"]


def send(http: httpx.Client, sender: dict, cid: str, body: str) -> int:
    r = http.post(f"/v1/conversations/{cid}/messages", headers={"Authorization": f"Bearer {sender['access_token']}"},
                  json={"client_msg_id": uuid.uuid4().hex, "body": body})
    assert r.status_code == 201, r.text
    return r.json()["seq"]


def test_a_cut_socket_reconnects_and_resumes_without_loss_or_repeats(people, raychat):
    """The socket is cut, and held down while three messages are sent: the client reconnects
    with `since` and shows each message once, in order, with nothing missing."""
    state = {"down": False}
    hellos: list[dict] = []

    def route(ws):
        if state["down"]:
            ws.close(code=1013, reason="held down by the test")
            return
        server = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if frame["type"] == "hello":
                hellos.append(frame)
            server.send(message)

        ws.on_message(from_page)
        state["live"] = ws

    with httpx.Client(base_url=raychat.base_url, timeout=30) as http:
        carol_name = name("carol")
        carol = api_user(http, carol_name)
        bob = people("bob", socket_route=route)
        me = api_user(http, bob.username)
        cid = direct_with(http, carol, me)
        send(http, carol, cid, "one")
        bob.enter(register=False)
        bob.open(carol_name)
        expect(bob.messages()).to_have_count(1)
        wait_until(bob.page, lambda: len(hellos) == 1, "the first hello")

        state["down"] = True
        state["live"].close(code=1012, reason="cut by the test")
        expect(bob.page.locator("#connection")).not_to_have_text("")          # offline / connecting
        for body in ("two", "three", "four"):
            send(http, carol, cid, body)
        state["down"] = False

        expect(bob.messages()).to_have_count(4)
        assert bob.messages().evaluate_all("ms => ms.map(m => m.querySelector('.body').textContent)") == [
            "one", "two", "three", "four"]
        assert hellos[-1]["since"][cid] == 1, hellos[-1]       # resumed after what it had shown
        expect(bob.page.locator("#connection")).to_have_text("")
        # Live again: a new message arrives on the resumed socket.
        send(http, carol, cid, "five")
        expect(bob.messages()).to_have_count(5)


def test_the_token_is_refreshed_before_it_expires_and_the_socket_gets_it(people, raychat):
    """A minute before the access token expires the client refreshes it, and the open socket is
    sent the new one in an `auth` frame, so the server does not close it at the old expiry."""
    frames: list[tuple[str, dict]] = []
    dana = people("dana")
    dana.enter(register=True)
    before = dana.page.evaluate("() => JSON.parse(sessionStorage.getItem('raychat.session'))")
    # As if the token had 65 s left: after the reload the socket opens with it, and the refresh
    # is due 5 s later (a minute before expiry).
    dana.page.evaluate("() => { const s = JSON.parse(sessionStorage.getItem('raychat.session'));"
                       " s.expires_at = Date.now() + 65000; sessionStorage.setItem('raychat.session', JSON.stringify(s)); }")
    dana.page.on("websocket", lambda ws: (
        ws.on("framesent", lambda payload: frames.append(("sent", json.loads(payload)))),
        ws.on("framereceived", lambda payload: frames.append(("received", json.loads(payload))))))
    dana.page.reload()
    expect(dana.page.locator("#chat-app")).to_be_visible()
    wait_until(dana.page, lambda: any(d == "received" and f["type"] == "authed" for d, f in frames),
               "the socket is answered authed", timeout_s=20)
    after = dana.page.evaluate("() => JSON.parse(sessionStorage.getItem('raychat.session'))")
    assert after["refresh_token"] != before["refresh_token"]         # spent and replaced
    sent = [f for d, f in frames if d == "sent" and f["type"] == "auth"]
    assert sent and sent[-1]["token"] == after["access_token"]
    assert after["expires_at"] > before["expires_at"] - 5000         # a full lifetime again


def test_sign_in_mistakes_are_explained(people, raychat):
    dana = people("dana")
    with httpx.Client(base_url=raychat.base_url, timeout=30) as http:
        api_user(http, dana.username)
    p = dana.page
    p.fill("#login-username", dana.username)
    p.fill("#login-password", "not the password")
    p.click("#login-submit")
    expect(p.locator("#login-error")).to_have_text("Wrong username or password.")
    p.fill("#login-password", PASSWORD)
    p.click("#register-submit")
    expect(p.locator("#login-error")).to_have_text("That username is taken. Pick another, or log in.")
    expect(p.locator("#chat-app")).to_be_hidden()

    dana.enter(register=False)
    dana.start("nobody_" + uuid.uuid4().hex[:8])
    expect(p.locator("#new-error")).to_contain_text("No user is called nobody_")
    p.click("#logout")
    expect(p.locator("#login-form")).to_be_visible()
    assert p.evaluate("() => sessionStorage.length") == 0


def test_the_sequencer_delivers_each_event_once_in_order(people):
    """The client's ordering rules (gateway/static/js/sequencer.js), run in the browser itself."""
    page = people("seq").page
    result = page.evaluate("""async () => {
        const {Sequencer} = await import("./static/js/sequencer.js");
        const {backoff} = await import("./static/js/socket.js");
        const ev = (cid, seq) => ({conversation_id: cid, seq});
        const seqs = (r) => r.deliver.map((e) => e.seq);
        const s = new Sequencer();
        s.start("c", 3);
        const out = {};
        out.next = seqs(s.offer(ev("c", 4)));
        out.repeat = seqs(s.offer(ev("c", 4)));
        out.old = seqs(s.offer(ev("c", 2)));
        const gap = s.offer(ev("c", 7));
        out.gap = [seqs(gap), gap.syncAfter];
        out.gapAgain = s.offer(ev("c", 6)).syncAfter;          // one sync per gap
        out.filled = seqs(s.offer(ev("c", 5)));
        out.after = seqs(s.offer(ev("c", 8)));
        out.unknown = seqs(s.offer(ev("new", 12)));
        out.since = s.since();
        s.offer(ev("c", 10));
        out.startReleases = s.start("c", 9).map((e) => e.seq);
        out.backoff = [backoff(0, () => 0), backoff(0, () => 1), backoff(10, () => 1), backoff(3, () => 0.5)];
        return out;
    }""")
    assert result == {
        "next": [4], "repeat": [], "old": [], "gap": [[], 4], "gapAgain": None, "filled": [5, 6, 7],
        "after": [8], "unknown": [12], "since": {"c": 8, "new": 12}, "startReleases": [10],
        "backoff": [250, 500, 15000, 3000],
    }


def test_the_timeline_applies_changes_as_history_shows_them(people):
    """gateway/static/js/timeline.js: live edits, deletions and reactions land on the messages a
    history page brought, and an own send in flight is confirmed by its event."""
    page = people("tl").page
    result = page.evaluate("""async () => {
        const {Timeline} = await import("./static/js/timeline.js");
        const t = new Timeline();
        const msg = (seq, sender, body, extra = {}) => ({conversation_id: "c", seq, kind: "message",
            sender_id: sender, client_msg_id: "k" + seq, body, attachments: [], created_at: "t" + seq, ...extra});
        const out = {};
        out.page = t.addPage({messages: [msg(3, "u2", "three", {reactions: {"👍": 1}}), msg(2, "u1", "two")],
                              has_more: true});
        out.again = t.addPage({messages: [msg(2, "u1", "two")], has_more: false});
        t.addPending("mine-1", "four", []);
        const own = t.apply(msg(4, "me", "four", {client_msg_id: "mine-1"}), "me");
        out.own = [own.added, own.confirmed, t.pending.size];
        out.edit = t.apply({kind: "edit", seq: 5, target_seq: 2, body: "two!", created_at: "t5"}, "me").changed;
        out.react = t.apply({kind: "reaction", seq: 6, target_seq: 3, emoji: "👍", on: true}, "me").changed;
        t.apply({kind: "reaction", seq: 7, target_seq: 3, emoji: "🎉", on: true}, "me");
        t.apply({kind: "reaction", seq: 8, target_seq: 3, emoji: "🎉", on: false}, "me");
        out.del = t.apply({kind: "delete", seq: 9, target_seq: 4}, "me").changed;
        out.editDeleted = t.apply({kind: "edit", seq: 10, target_seq: 4, body: "back?"}, "me").changed;
        out.unknownTarget = t.apply({kind: "edit", seq: 11, target_seq: 1, body: "x"}, "me").changed;
        out.member = t.apply({kind: "member_added", seq: 12, user_ids: ["u9"]}, "me");
        out.items = t.sorted().map((m) => [m.seq, m.body, m.deleted, m.edited_at, m.reactions]);
        out.bounds = [t.oldest, t.newest, t.nextAfter(2), t.nextAfter(4), t.hasMore];
        return out;
    }""")
    assert result == {
        "page": [3, 2], "again": [], "own": [[4], "mine-1", 0], "edit": [2], "react": [3], "del": [4],
        "editDeleted": [], "unknownTarget": [], "member": {"added": [], "changed": [], "confirmed": None},
        "items": [[2, "two!", False, "t5", {}], [3, "three", False, None, {"👍": 2}], [4, None, True, None, {}]],
        "bounds": [2, 4, 3, None, False],
    }


def test_the_page_fits_a_phone(people, raychat):
    """Narrow screens show one pane at a time: the list, then the chat with a way back."""
    bob = people("bob")
    with httpx.Client(base_url=raychat.base_url, timeout=30) as http:
        alice_name = name("alice")
        alice, me = api_user(http, alice_name), api_user(http, bob.username)
        send(http, alice, direct_with(http, alice, me), "On my phone?")
    bob.page.set_viewport_size({"width": 390, "height": 760})
    bob.enter(register=False)
    expect(bob.page.locator("#chat")).to_be_hidden()
    bob.open(alice_name)
    expect(bob.page.locator("#chat")).to_be_visible()
    expect(bob.page.locator(".sidebar")).to_be_hidden()
    expect(bob.messages()).to_have_count(1)
    bob.page.click("#back")
    expect(bob.page.locator(".sidebar")).to_be_visible()
    expect(bob.page.locator("#chat")).to_be_hidden()
