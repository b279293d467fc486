"""``raychat chat`` as a subprocess against the session raychat: lines typed on its stdin, what it
prints read from its stdout, and an SDK client on the other end of the conversation."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from raychat.client import Client
from tests.test_cli import RAYCHAT

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


class Output:
    """The lines a process prints, read as they come."""

    def __init__(self, stream: asyncio.StreamReader):
        self.stream = stream
        self.lines: list[str] = []

    async def expect(self, text: str, timeout: float = 30.0) -> str:
        """The next line containing ``text`` (lines before it are kept in ``lines``)."""
        async def scan():
            while True:
                raw = await self.stream.readline()
                if not raw:
                    raise AssertionError(f"output ended without {text!r}; got:\n" + "\n".join(self.lines))
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if text in line:
                    return line
        try:
            return await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {text!r} within {timeout} s; got:\n" + "\n".join(self.lines)) from None


async def test_the_terminal_client_registers_opens_a_direct_conversation_and_chats_both_ways(raychat):
    name = f"cli{uuid.uuid4().hex[:10]}"
    async with Client(raychat.base_url) as bob:
        bob_name = f"bob{uuid.uuid4().hex[:10]}"
        await bob.register(bob_name, PASSWORD)
        await bob.login(bob_name, PASSWORD)

        proc = await asyncio.create_subprocess_exec(
            *RAYCHAT, "chat", "--server", raychat.base_url, "--user", name, "--password-stdin",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("RAYCHAT_")})
        out = Output(proc.stdout)

        def type_line(line: str) -> None:
            proc.stdin.write(line.encode() + b"\n")

        try:
            type_line(PASSWORD)
            await out.expect(f"registered and logged in as {name}")
            await out.expect("connected")

            type_line(f"/new @{bob_name}")
            await out.expect(f"— @{bob_name} —")
            cid = [c["conversation_id"] async for c in bob.all_conversations()][0]
            type_line("hello from the terminal")

            async with bob.connect(since={cid: 0}) as conn:
                await out.expect(f"* {bob_name} is online")
                async for ev in conn.events():
                    break
                assert (ev["conversation_id"], ev["body"]) == (cid, "hello from the terminal")

                await conn.typing(cid, True)
                await out.expect(f"{bob_name} is typing…")
                await conn.send(cid, "hello from the sdk")
                await out.expect(f"{bob_name}: hello from the sdk")

            type_line("/list")
            await out.expect(f"  1. @{bob_name}")
            type_line("/open 1")
            await out.expect(f"— @{bob_name} —")
            await out.expect(f"{name}: hello from the terminal")
            await out.expect(f"{bob_name}: hello from the sdk")
            type_line("/history")
            await out.expect("(no earlier messages)")
            type_line("/frobnicate")
            await out.expect("! unknown command /frobnicate")
            type_line("/quit")
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    stored = (await _events(raychat, bob_name, cid))
    assert [e["body"] for e in stored] == ["hello from the terminal", "hello from the sdk"]


async def test_a_wrong_password_for_an_existing_user_is_refused(raychat):
    async with Client(raychat.base_url) as someone:
        name = f"cli{uuid.uuid4().hex[:10]}"
        await someone.register(name, PASSWORD)
    proc = await asyncio.create_subprocess_exec(
        *RAYCHAT, "chat", "--server", raychat.base_url, "--user", name, "--password-stdin",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(b"not the password\n"), 60)
    assert proc.returncode == 1
    assert f"wrong password for {name!r}" in stdout.decode()


async def _events(raychat, username: str, cid: str) -> list[dict]:
    async with Client(raychat.base_url) as c:
        await c.login(username, PASSWORD)
        return (await c.events_after(cid, 0))["events"]
