"""The terminal client's pure parts: what a typed line means, and how frames become lines."""

from __future__ import annotations

import io

import pytest

from raychat.terminal import (Command, Terminal, conversation_title, parse_command, render_conversation_list,
                              render_event, render_history, render_signal)

NAMES = {"u1": "alice", "u2": "bob", "u3": "carol"}
AT = "2026-11-28T10:00:00.000Z"


@pytest.mark.parametrize("line,command", [
    ("/list", Command("list")),
    ("/help", Command("help")),
    ("/quit", Command("quit")),
    ("/exit", Command("quit")),
    ("/open 3", Command("open", "3")),
    ("/open c_abc123", Command("open", "c_abc123")),
    ("/new @bob", Command("new", users=("bob",))),
    ("/group Weekend plans @bob @carol", Command("group", "Weekend plans", users=("bob", "carol"))),
    ("/history", Command("history")),
    ("/history 50", Command("history", count=50)),
    ("hello there", Command("say", "hello there")),
    ("  indented stays  ", Command("say", "  indented stays  ")),
    ("//not a command", Command("say", "/not a command")),
    ("", Command("noop")),
    ("   \n", Command("noop")),
])
def test_lines_parse_to_commands(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line,says", [
    ("/frobnicate", "unknown command /frobnicate"),
    ("/new bob", "usage: /new @user"),
    ("/new @a @b", "usage: /new @user"),
    ("/group @bob", "usage: /group"),
    ("/group Title", "usage: /group"),
    ("/group Weekend @bob plans", "usage: /group"),
    ("/history lots", "/history takes a number"),
    ("/history 0", "/history takes a number"),
    ("/open", "usage"),
    ("/open 1 2", "usage"),
    ("/list everything", "usage"),
])
def test_bad_commands_say_what_is_wrong(line, says):
    cmd = parse_command(line)
    assert cmd.name == "error" and says in cmd.arg


def msg(seq, sender="u1", **extra):
    return {"conversation_id": "c1", "seq": seq, "kind": "message", "sender_id": sender, "body": f"m{seq}",
            "created_at": AT, **extra}


def test_a_message_renders_as_time_sender_body():
    line = render_event(msg(1), NAMES)
    assert line.endswith("] alice: m1") and line.startswith("[")


def test_message_decorations():
    line = render_event(msg(5, reply_to=2, attachments=["m1", "m2"], edited_at=AT, reactions={"👍": 2}), NAMES)
    assert "↪#2" in line and "[2 attachment(s)]" in line and "(edited)" in line and "👍2" in line
    assert render_event(msg(6, deleted=True, body=None), NAMES).endswith("alice: (deleted)")


@pytest.mark.parametrize("event,text", [
    ({"kind": "edit", "target_seq": 4, "body": "fixed"}, "alice edited #4: fixed"),
    ({"kind": "delete", "target_seq": 4}, "alice deleted #4"),
    ({"kind": "reaction", "target_seq": 4, "emoji": "🎉", "on": True}, "alice reacted 🎉 on #4"),
    ({"kind": "reaction", "target_seq": 4, "emoji": "🎉", "on": False}, "alice took back 🎉 on #4"),
    ({"kind": "member_added", "user_ids": ["u2", "u3"]}, "alice added bob, carol"),
    ({"kind": "member_removed", "user_ids": ["u2"]}, "alice removed bob"),
    ({"kind": "member_removed", "user_ids": ["u1"]}, "alice left"),
    ({"kind": "role_changed", "user_ids": ["u2"], "role": "admin"}, "alice made bob admin"),
    ({"kind": "title_changed", "title": "Trip"}, "alice renamed the conversation to “Trip”"),
])
def test_every_event_kind_has_a_line(event, text):
    ev = {"conversation_id": "c1", "seq": 9, "sender_id": "u1", "created_at": AT, **event}
    assert render_event(ev, NAMES).endswith(text)


def test_unknown_users_show_their_id():
    assert "u9: m1" in render_event(msg(1, sender="u9"), NAMES)


def test_history_pages_come_newest_first_and_print_oldest_first():
    lines = render_history([msg(3), msg(2), msg(1)], NAMES)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["m1", "m2", "m3"]


def test_conversation_list_shows_titles_unread_counts_and_the_last_message():
    convs = [
        {"conversation_id": "c1", "kind": "direct", "members": ["u1", "u2"], "unread_count": 3,
         "last_message": {"seq": 3, "sender_id": "u2", "kind": "message", "body": "see you\nsoon", "created_at": AT}},
        {"conversation_id": "c2", "kind": "group", "title": "Trip", "members": ["u1", "u2", "u3"],
         "unread_count": 0, "last_message": None},
    ]
    lines = render_conversation_list(convs, NAMES, me="u1")
    assert lines[0] == "  1. @bob  [3 unread]  — bob: see you soon"
    assert lines[1] == "  2. Trip (3 members)"
    assert "no conversations" in render_conversation_list([], NAMES, "u1")[0]


def test_a_direct_conversation_is_named_after_the_other_member():
    conv = {"conversation_id": "c1", "kind": "direct", "members": ["u1", "u2"]}
    assert conversation_title(conv, NAMES, "u2") == "@alice"
    assert conversation_title(conv, NAMES, "u1") == "@bob"


def test_signals_render_typing_presence_and_errors():
    assert render_signal({"type": "typing", "conversation_id": "c1", "user_id": "u2", "on": True}, NAMES, "u1") \
        == "bob is typing…"
    assert render_signal({"type": "typing", "conversation_id": "c1", "user_id": "u2", "on": False}, NAMES, "u1") is None
    assert render_signal({"type": "typing", "conversation_id": "c1", "user_id": "u1", "on": True}, NAMES, "u1") is None
    assert render_signal({"type": "presence", "user_id": "u2", "status": "online", "last_seen": None}, NAMES, "u1") \
        == "* bob is online"
    assert render_signal({"type": "presence", "user_id": "u2", "status": "offline", "last_seen": AT}, NAMES,
                         "u1").startswith("* bob is offline (last seen ")
    assert render_signal({"type": "error", "code": "not_found", "message": "no such conversation"}, NAMES, "u1") \
        == "! not_found: no such conversation"
    assert render_signal({"type": "receipt", "user_id": "u2", "seq": 3}, NAMES, "u1") is None


def test_a_terminal_that_is_not_a_tty_writes_plain_lines_and_reads_to_the_end():
    out = io.StringIO()
    term = Terminal(stdin=io.StringIO("/list\nhello\n"), stdout=out)
    assert not term.interactive and term.prompt == ""
    term.print("one")
    assert out.getvalue() == "one\n"
    assert [term.read_line(), term.read_line(), term.read_line()] == ["/list", "hello", None]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_printed_while_the_user_types_goes_above_the_prompt_which_is_drawn_again():
    out = Tty()
    term = Terminal(stdin=Tty(), stdout=out)
    assert term.interactive and term.prompt == "> "
    term.print("before any prompt")
    term._prompting = True          # the input thread is waiting in input()
    term.print("bob: hi")
    assert out.getvalue() == "before any prompt\n\r\x1b[Kbob: hi\n> "


def test_chat_command_line():
    from raychat.cli import build_parser

    args = build_parser().parse_args(["chat", "--user", "alice", "--password-stdin"])
    assert (args.server, args.user, args.password_stdin) == ("http://127.0.0.1:8000", "alice", True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat"])         # --user is required
