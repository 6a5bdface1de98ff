"""The client commands' arguments, and the one place their errors become messages and
exit codes: 0 done, 1 failed, 2 bad arguments, 130 interrupted."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from filesvc.client.errors import ClientError, UsageError

if TYPE_CHECKING:
    from filesvc.client.config import Target

# The handlers import what they use: `filesvc serve` need not load httpx and rich.

VISIBILITIES = ["private", "internal", "public"]
_SIZE_RE = re.compile(r"^(\d+)([KMG]?)(?:i?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
MIN_CHUNK_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 1024**3
DEFAULT_CHUNK_BYTES = 16 * 1024**2


def parse_size(text: str) -> int:
    """`16M`, `512K`, `1G` (binary units), or plain bytes."""
    match = _SIZE_RE.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512K, 16M, 1G)")
    return int(match[1]) * _UNITS[match[2].upper()]


def chunk_size(text: str) -> int:
    size = parse_size(text)
    if not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES:
        raise argparse.ArgumentTypeError("the chunk size must be between 64K and 1G")
    return size


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def connection_flags(parser: argparse.ArgumentParser, token: bool = True) -> None:
        parser.add_argument(
            "--server",
            help="the server's URL (else $FILESVC_SERVER, else the last one signed in to, "
            "else http://127.0.0.1:8000)",
        )
        if token:
            parser.add_argument(
                "--token", help="a bearer token (else $FILESVC_TOKEN, else the stored one)"
            )

    login_parser = commands.add_parser(
        "login", help="sign in to a server and keep its token for the other commands"
    )
    connection_flags(login_parser, token=False)
    login_parser.add_argument("--username", help="else $FILESVC_USERNAME, else a prompt")
    login_parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else $FILESVC_PASSWORD, "
        "else a prompt)",
    )
    login_parser.set_defaults(handler=cmd_login, needs_settings=False)

    upload = commands.add_parser(
        "upload", help="upload files with a progress bar; run it again to resume (tus)"
    )
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    connection_flags(upload)
    upload.add_argument("--visibility", choices=VISIBILITIES, help="default: private")
    upload.add_argument(
        "--chunk-size",
        type=chunk_size,
        default=DEFAULT_CHUNK_BYTES,
        help="bytes per PATCH request (default 16M)",
    )
    upload.add_argument(
        "--limit-rate", type=parse_size, help="at most this many bytes a second, e.g. 10M"
    )
    upload.set_defaults(handler=cmd_upload, needs_settings=False)

    download = commands.add_parser("download", help="download a file with a progress bar")
    download.add_argument("file_id", metavar="ID")
    download.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the file to write, or a folder (default: the file's name in this folder)",
    )
    download.add_argument(
        "-c",
        "--continue",
        dest="resume",
        action="store_true",
        help="complete a partial download (NAME.part, or a short NAME) instead of starting over",
    )
    download.add_argument(
        "--limit-rate", type=parse_size, help="at most this many bytes a second, e.g. 10M"
    )
    connection_flags(download)
    download.set_defaults(handler=cmd_download, needs_settings=False)


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except ClientError as exc:
        print(f"filesvc: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("filesvc: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def cmd_login(args: argparse.Namespace) -> int:
    from filesvc.client.config import CredentialStore, resolve_server
    from filesvc.client.login import ask_password, ask_username, describe, login

    store = CredentialStore()
    server = resolve_server(args.server, store)
    username = ask_username(args.username)
    password = ask_password(username, args.password_stdin)
    credentials, role = login(server, username, password, store)
    print(describe(server, credentials, role, store))
    return 0


def _signed_in(target: Target) -> Target:
    from filesvc.client.config import CredentialStore

    stored = CredentialStore().get(target.server)
    if not target.token and stored is not None:
        raise ClientError(
            f"the token for {target.server} has expired: run "
            f"`filesvc login --server {target.server}` again"
        )
    if not target.token:
        raise ClientError(
            f"not signed in to {target.server}: run `filesvc login --server {target.server}`, "
            "or pass --token or FILESVC_TOKEN"
        )
    return target


def cmd_upload(args: argparse.Namespace) -> int:
    from filesvc.client.config import resolve_target
    from filesvc.client.http import open_client
    from filesvc.client.progress import open_display
    from filesvc.client.state import ResumeState
    from filesvc.client.upload import Uploader, UploadOptions

    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise UsageError("no such file: " + ", ".join(missing))
    target = _signed_in(resolve_target(args.server, args.token))
    options = UploadOptions(args.visibility, args.chunk_size, args.limit_rate)
    failed = 0
    with open_client(target) as client, open_display() as display:
        uploader = Uploader(client, target, ResumeState(), display, options)
        for path in args.files:
            try:
                uploaded = uploader.upload(path)
            except ClientError as exc:
                if exc.fatal:
                    raise
                display.note(f"filesvc: {exc.message}")
                failed += 1
                continue
            display.result(uploaded.file_id)
    if failed:
        print(f"filesvc: {failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_download(args: argparse.Namespace) -> int:
    from filesvc.client.config import resolve_target
    from filesvc.client.download import Downloader
    from filesvc.client.http import open_client
    from filesvc.client.progress import open_display
    from filesvc.client.state import ResumeState

    target = resolve_target(args.server, args.token)  # public files need no token
    with open_client(target) as client, open_display() as display:
        downloader = Downloader(client, target, ResumeState(), display, args.limit_rate)
        path = downloader.download(args.file_id, args.output, args.resume)
    print(path, flush=True)
    return 0
