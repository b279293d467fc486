"""The `raychat` command: its help, its config errors, and `raychat up` as a whole process tree."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Sequence

import httpx
import psutil
import pytest

from raychat import __version__
from raychat.cli import UP_OPTIONS, build_parser
from storage.embedded import free_listen_port

SCRIPTS = Path(sysconfig.get_path("scripts"))
RAYCHAT = [str(SCRIPTS / "raychat")] if (SCRIPTS / "raychat").exists() else [sys.executable, "-m", "raychat.cli"]
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30
SESSION_DIR = re.compile(r"/session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")


def fresh_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any raychat setting or Ray cluster address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYCHAT_") and k != "RAY_ADDRESS"}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RAYCHAT, *args], env=env or fresh_env(), capture_output=True, text=True,
                          timeout=60)


# ---- help and errors ---------------------------------------------------------------------


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    for command in ("up", "version", "chat"):
        assert re.search(rf"^\s+{command}\s+\S", out.stdout, re.M), f"{command} not explained"


def test_up_help_explains_every_option_and_its_variable():
    out = run_cli("up", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for field, (flag, _, _) in UP_OPTIONS.items():
        assert flag in text
        assert f"RAYCHAT_{field.upper()}" in text
    up = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" up"))
    for action in up._actions:
        assert action.help, f"{action.option_strings} has no help"
        for flag in action.option_strings:
            assert flag in text


def test_version_names_raychat_ray_and_python():
    out = run_cli("version")
    assert out.returncode == 0
    assert out.stdout.startswith(f"raychat {__version__} (ray ")


def test_no_command_prints_help_and_exits_2():
    out = run_cli()
    assert out.returncode == 2
    assert "up" in out.stderr


@pytest.mark.parametrize("env, args, variable", [
    ({"RAYCHAT_PORT": "abc"}, [], "RAYCHAT_PORT"),
    ({}, ["--port", "0"], "RAYCHAT_PORT"),
    ({"RAYCHAT_LOG_LEVEL": "LOUD"}, [], "RAYCHAT_LOG_LEVEL"),
])
def test_a_config_error_names_the_variable_and_exits_2(env, args, variable):
    out = run_cli("up", *args, env=fresh_env(**env))
    assert out.returncode == 2
    assert variable in out.stderr
    assert "Traceback" not in out.stderr


# ---- raychat up, end to end --------------------------------------------------------------


class Up:
    """One `raychat up` child process, watched from outside."""

    def __init__(self, data_dir: Path, logs: Path, env: dict[str, str] | None = None,
                 args: Sequence[str] = (), ca: Path | None = None):
        """``args`` go after ``up``; ``ca`` (a PEM file the server's certificate chains to) means the
        run serves HTTPS, and httpx checks its certificate against that file."""
        self.port = free_listen_port()
        self.data_dir = data_dir
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("up-*.out")))
        self.out_path, self.err_path = logs / f"up-{n}.out", logs / f"up-{n}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [*RAYCHAT, "up", "--port", str(self.port), "--data-dir", str(data_dir), *args],
                env=env or fresh_env(), stdout=out, stderr=err, start_new_session=True)
        self.seen: dict[int, float] = {}

    def output(self) -> str:
        return f"--- stdout\n{self.out_path.read_text()}\n--- stderr (tail)\n{self.err_path.read_text()[-6000:]}"

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"raychat up exited with {self.proc.returncode}\n{self.output()}")
            self.remember_descendants()
            try:
                if httpx.get(self.url + "/healthz", timeout=2, verify=self.verify).status_code == 200:
                    self.remember_descendants()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"/healthz did not answer 200 within {START_TIMEOUT_S} s\n{self.output()}")

    def wait_for_output(self, line: str, timeout_s: float = 15) -> None:
        """/healthz can answer a moment before serve.run returns and the line is printed."""
        deadline = time.monotonic() + timeout_s
        while line not in self.out_path.read_text():
            assert time.monotonic() < deadline, f"no {line!r} on stdout\n{self.output()}"
            time.sleep(0.2)

    def remember_descendants(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    self.seen.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def descendant_cmdlines(self) -> list[str]:
        lines = []
        for pid in self.seen:
            try:
                lines.append(" ".join(psutil.Process(pid).cmdline()))
            except psutil.Error:
                pass
        return lines

    def alive(self) -> list[str]:
        """Every process this run started (or that names its Ray session) still running."""
        sessions = {m.group(0) for line in self.descendant_cmdlines() for m in SESSION_DIR.finditer(line)}
        left = {}
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    left[pid] = " ".join(proc.cmdline())[:160]
            except psutil.Error:
                pass
        if sessions:
            for proc in psutil.process_iter(["cmdline", "status"]):
                try:
                    line = " ".join(proc.info["cmdline"] or ())
                    if proc.info["status"] != psutil.STATUS_ZOMBIE and any(s in line for s in sessions):
                        left[proc.pid] = line[:160]
                except psutil.Error:
                    pass
        left.pop(os.getpid(), None)
        return [f"{pid} {line}" for pid, line in left.items()]

    def terminate_and_check(self) -> None:
        self.remember_descendants()
        assert self.seen, "raychat up started no process at all?"
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"raychat up still running {STOP_TIMEOUT_S} s after SIGTERM\n{self.output()}")
        took = time.monotonic() - sent
        assert code == 0, f"exit code {code}\n{self.output()}"
        left = self.alive()
        assert not left, f"left behind after {took:.1f} s:\n" + "\n".join(left) + "\n" + self.output()

    def kill_everything(self) -> None:
        """Test clean-up, whatever happened."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created:
                    proc.kill()
            except psutil.Error:
                pass


@pytest.fixture
def launched(tmp_path):
    runs: list[Up] = []

    def launch(data_dir: Path, env: dict[str, str] | None = None, **options) -> Up:
        up = Up(data_dir, tmp_path / "logs", env, **options)
        runs.append(up)
        return up

    yield launch
    for up in runs:
        up.kill_everything()


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_up_serves_stops_cleanly_on_sigterm_and_keeps_data_across_restarts(launched, tmp_path):
    data_dir = tmp_path / "data"
    account = {"username": "restart_alice", "password": "correct horse battery"}

    first = launched(data_dir)
    first.wait_healthy()
    r = httpx.post(first.url + "/v1/auth/register", json=account, timeout=30)
    assert r.status_code == 201, r.text
    user_id = r.json()["user_id"]
    bob = {"username": "restart_bob", "password": "correct horse battery"}
    bob_id = httpx.post(first.url + "/v1/auth/register", json=bob, timeout=30).json()["user_id"]
    token = httpx.post(first.url + "/v1/auth/login", json=account, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(first.url + "/v1/conversations", headers=auth, timeout=30,
                   json={"kind": "direct", "members": [bob_id]})
    assert r.status_code == 201, r.text
    cid = r.json()["conversation_id"]
    for i in range(3):
        r = httpx.post(f"{first.url}/v1/conversations/{cid}/messages", headers=auth, timeout=30,
                       json={"client_msg_id": f"k{i}", "body": f"kept {i}"})
        assert r.status_code == 201, r.text
    first.wait_for_output(f"raychat is up on {first.url} (data in {data_dir})\n")
    assert (data_dir / "media").is_dir() and (data_dir / "mongo").is_dir()
    cmdlines = " ".join(first.descendant_cmdlines())
    assert "redis-server" in cmdlines and "secantus" in cmdlines
    first.terminate_and_check()

    second = launched(data_dir)
    second.wait_healthy()
    r = httpx.post(second.url + "/v1/auth/login", json=account, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user_id
    assert r.json()["access_token"]
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    convs = httpx.get(second.url + "/v1/conversations", headers=auth, timeout=30).json()["conversations"]
    assert [c["conversation_id"] for c in convs] == [cid]
    events = httpx.get(f"{second.url}/v1/conversations/{cid}/events", headers=auth, timeout=30).json()["events"]
    assert [(e["seq"], e["body"]) for e in events] == [(1, "kept 0"), (2, "kept 1"), (3, "kept 2")]
    r = httpx.post(f"{second.url}/v1/conversations/{cid}/messages", headers=auth, timeout=30,
                   json={"client_msg_id": "k3", "body": "after the restart"})
    assert r.status_code == 201 and r.json()["seq"] == 4
    second.terminate_and_check()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_up_uses_given_servers_and_starts_none_of_its_own(launched, tmp_path):
    from storage.embedded import start_mongo, start_redis

    mongo, redis = start_mongo(), start_redis()
    try:
        env = fresh_env(RAYCHAT_MONGODB_URI=mongo.uri, RAYCHAT_REDIS_URL=redis.uri,
                        RAYCHAT_JWT_SECRET="a-test-secret-that-is-long-enough-for-hs256")
        up = launched(tmp_path / "data", env)
        up.wait_healthy()
        cmdlines = " ".join(up.descendant_cmdlines())
        assert "redis-server" not in cmdlines and "secantus" not in cmdlines
        assert not (tmp_path / "data" / "mongo").exists()
        assert not (tmp_path / "data" / "jwt.secret").exists()
        r = httpx.post(up.url + "/v1/auth/register", json={"username": "given_bob", "password": "correct horse"},
                       timeout=30)
        assert r.status_code == 201, r.text
        up.terminate_and_check()
        assert mongo.proc.poll() is None and redis.proc.poll() is None, "raychat stopped servers it did not start"
    finally:
        mongo.stop()
        redis.stop()
