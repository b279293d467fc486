"""The launchers start real servers, keep on-disk data across restarts and leave nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from storage.embedded import ServerStartError, _ephemeral_low, free_listen_port, start_mongo, start_redis
from storage.mongo import MongoStores

USER = {"user_id": "u1", "username": "alice", "password_hash": "h", "display_name": "A",
        "created_at": datetime(2030, 1, 1, tzinfo=timezone.utc)}


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def dead_or_zombie(pid: int) -> bool:
    """Gone, or exited and waiting for a reaper (in a container pid 1 may never reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_on_disk_mongo_keeps_data_across_a_restart(tmp_path: Path):
    server = start_mongo(tmp_path / "db")
    try:
        stores = MongoStores(server.uri, "raychat")
        await stores.users.create(USER)
        await stores.close()
        server.stop()
        server = start_mongo(tmp_path / "db")
        stores = MongoStores(server.uri, "raychat")
        assert await stores.users.by_id("u1") == USER
        await stores.close()
    finally:
        server.stop()


@pytest.mark.parametrize("start", [start_mongo, start_redis], ids=["mongo", "redis"])
def test_stop_leaves_no_process_and_can_be_repeated(start):
    server = start()
    server.stop()
    assert process_gone(server.pid)
    assert group_gone(server.pid)           # the server's own group: no stray children
    server.stop()


def test_a_server_that_cannot_start_says_why(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match="Address already in use"):
            start_mongo(port=port, log_path=tmp_path / "mongo.log")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_server_dies_with_a_parent_that_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", "import time; from storage.embedded import start_redis; "
                               "print(start_redis().pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )
    try:
        server_pid = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)       # no atexit, no stop(): only the kernel can help
        deadline = time.monotonic() + 5
        while not dead_or_zombie(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dead_or_zombie(server_pid)
    finally:
        parent.kill()
        parent.wait()


def test_a_port_for_a_later_bind_is_never_one_the_kernel_hands_out_meanwhile():
    # Ports the kernel gives to bind(0) and outgoing connections start at the ephemeral range's
    # low end: a port below it, free now, can only be taken by an explicit bind.
    ports = {free_listen_port() for _ in range(20)}
    assert all(20_000 <= p < min(30_000, _ephemeral_low()) for p in ports)
    assert len(ports) > 1                 # drawn at random: two servers starting at once rarely collide
    port = ports.pop()
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))         # free indeed
        s.listen()
        with pytest.raises(RuntimeError):
            free_listen_port(port, port + 1)       # and a taken one is never offered
