"""The ``raychat`` command. Process supervision lives in ``raychat.launcher``."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from raychat import __version__, logs
from raychat.config import ConfigError, Settings, load_settings

log = logging.getLogger("raychat")

# The options of `raychat up`, each overriding the Settings field of the same name.
UP_OPTIONS = {
    "host": ("--host", "HOST", "address Serve listens on"),
    "port": ("--port", "PORT", "HTTP/WebSocket port"),
    "data_dir": ("--data-dir", "DIR", "directory for the embedded MongoDB, Redis, media and JWT secret; "
                                    "created if missing, kept across restarts"),
    "hosts": ("--hosts", "N", "ActorHost Ray actors per node, each hosting many conversations and sessions"),
    "tls_cert": ("--tls-cert", "PATH", "PEM certificate chain: serve HTTPS and WSS instead of HTTP and WS "
                                       "(with --tls-key)"),
    "tls_key": ("--tls-key", "PATH", "PEM private key of --tls-cert, unencrypted"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raychat",
        description="raychat: a real-time chat backend on Ray (virtual actors, Serve, MongoDB, Redis, S3).",
        epilog="Every setting is also an environment variable RAYCHAT_<NAME>; see the README's "
               "configuration table. `raychat <command> --help` explains a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", title="commands")

    up = commands.add_parser(
        "up",
        help="run raychat here: Ray, the Serve gateway and embedded MongoDB and Redis",
        description="Start a local Ray cluster (or join RAY_ADDRESS), the Serve gateway and, unless "
                    "RAYCHAT_MONGODB_URI / RAYCHAT_REDIS_URL name real servers, an embedded SecantusDB "
                    "(MongoDB wire protocol) and redis-server keeping their data under --data-dir. "
                    "Runs until Ctrl-C or SIGTERM, which stop all of it within 30 s; a second Ctrl-C "
                    "forces.",
    )
    for field, (flag, metavar, text) in UP_OPTIONS.items():
        # Types are checked by Settings, so a bad flag and a bad variable get the same sentence.
        up.add_argument(flag, dest=field, default=None, metavar=metavar,
                        help=f"{text} (default: {_default(field)}, or ${'RAYCHAT_' + field.upper()})")

    commands.add_parser("version", help="print the versions of raychat, Ray and Python",
                        description="Print the versions of raychat, Ray and Python.")

    commands.add_parser(
        "ingress-env",
        help="print the environment that puts HAProxy before the gateway, for `ray start`",
        description="Print `export NAME=VALUE` lines selecting Serve's HAProxy front door "
                    "(raychat/ingress.py) for the `ray start` of a cluster node: cluster.yaml runs "
                    "`eval \"$(raychat ingress-env)\"` first. RAYCHAT_INGRESS=proxy prints only what "
                    "Serve's proxy needs (raychat's hook into its server); variables already set win.")

    chat = commands.add_parser(
        "chat",
        help="chat in the terminal with a raychat server",
        description="Log in to a raychat server (or register the name, after asking) and chat: list "
                    "conversations, open one, read its history, send, and see new messages, typing and "
                    "presence as they come. Type /help once in for the commands.",
    )
    chat.add_argument("--server", default="http://127.0.0.1:8000", metavar="URL",
                      help="the server's base URL, http(s)://host:port (default: http://127.0.0.1:8000, "
                           "where `raychat up` listens)")
    chat.add_argument("--user", required=True, metavar="NAME", help="your username")
    chat.add_argument("--password-stdin", action="store_true",
                      help="read the password from the first line of standard input instead of prompting; "
                           "an unknown name is then registered without asking")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"raychat {__version__} (ray {_dist_version('ray')}, python {platform.python_version()})")
        return 0
    if args.command == "up":
        return _up(args)
    if args.command == "chat":
        return _chat(args)
    if args.command == "ingress-env":
        return _ingress_env()
    parser.print_help(sys.stderr)
    return 2


def _up(args: argparse.Namespace) -> int:
    given = {field: getattr(args, field) for field in UP_OPTIONS if getattr(args, field) is not None}
    try:
        settings = load_settings(**given)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        if given:
            flags = ", ".join(f"{UP_OPTIONS[f][0]} sets RAYCHAT_{f.upper()}" for f in given)
            print(f"  (options given on the command line win over the variables: {flags})", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, stream=sys.stderr)
    from raychat import launcher

    try:
        return launcher.run(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except Exception:
        log.exception("raychat up failed")
        return 1


def _ingress_env() -> int:
    import os
    import shlex

    from pydantic import TypeAdapter, ValidationError

    from raychat.ingress import serve_env

    ingress = os.environ.get("RAYCHAT_INGRESS", "haproxy")
    if ingress not in ("haproxy", "proxy"):
        print(f"RAYCHAT_INGRESS={ingress!r}: must be haproxy or proxy", file=sys.stderr)
        return 2
    # Only this one setting: the exports must not fail on a setting that concerns the app alone.
    try:
        ws_compression = TypeAdapter(bool).validate_python(os.environ.get("RAYCHAT_WS_COMPRESSION", "false"))
    except ValidationError:
        print("RAYCHAT_WS_COMPRESSION: must be true or false", file=sys.stderr)
        return 2
    # `ray start` sets the node's open-files limit first (cluster.yaml: ulimit -n 65536).
    _, env = serve_env(ingress, max_conn=25_000, ws_compression=ws_compression)  # type: ignore[arg-type]
    for name, value in env.items():
        if name not in os.environ:
            print(f"export {name}={shlex.quote(value)}")
    return 0


def _chat(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from raychat import terminal

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass(f"password for {args.user}: ")
        except (EOFError, KeyboardInterrupt):
            return 1
    term = terminal.Terminal()
    interactive = term.interactive and not args.password_stdin

    async def confirm(question: str) -> bool:
        if not interactive:
            return True
        answer = await asyncio.get_running_loop().run_in_executor(None, input, question)
        return answer.strip().lower() in ("y", "yes")

    try:
        return asyncio.run(terminal.run_chat(args.server, args.user, password, term, confirm=confirm))
    except KeyboardInterrupt:
        return 130


def _default(field: str) -> str:
    value = Settings.model_fields[field].default
    if value is None:
        return "unset"
    if isinstance(value, Path) and not value.is_absolute():
        return f"./{value}"
    return str(value)


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
