"""The `filesvc` command line: the server's commands here, the client's in filesvc/client."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging.config
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from filesvc.client.commands import add_client_commands, run
from filesvc.config import Settings


def _logging_config(settings: Settings) -> dict[str, Any]:
    from filesvc.observability.logs import logging_config

    return logging_config(settings.log_format, os.environ.get("FILESVC_LOG_LEVEL", "INFO"))


# prometheus_client's name; not imported from it, since importing it reads the variable.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a directory where each writes its metrics for any of them to
    report the sum (prometheus_client's multiprocess mode): PROMETHEUS_MULTIPROC_DIR if
    set, emptied first, else a fresh one removed at exit. Set before any import of
    prometheus_client, which reads it once."""
    if workers < 2 and MULTIPROC_ENV not in os.environ:
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    directory = tempfile.mkdtemp(prefix="filesvc-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from filesvc.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print("database is up to date")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from filesvc.auth.security import load_or_create_secret_key
    from filesvc.server.protocol import protocol_class

    if args.workers > 1 and not settings.redis_url:
        print(
            "filesvc: --workers > 1 needs FILESVC_REDIS_URL: without Redis, live progress and "
            "file events stay inside one worker and subscribers on the others would miss them.",
            file=sys.stderr,
        )
        return 2
    if not args.no_migrate:
        # In a child process, so Alembic's modules never weigh on the server's memory.
        migrated = subprocess.run([sys.executable, "-m", "filesvc", "migrate"], check=False)
        if migrated.returncode != 0:
            return migrated.returncode
    if settings.secret_key is None:
        load_or_create_secret_key(settings.data_dir)  # before workers race to create it
    with _metrics_dir(args.workers):
        uvicorn.run(
            "filesvc.server.factory:create_served_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            # Closes connections whose request head or reading of a response stalls.
            http=protocol_class(),
            # Our own middleware logs requests without query strings (tokens may be there).
            access_log=False,
            # Applied again in each worker process, so they all log the same way.
            log_config=_logging_config(settings),
            proxy_headers=True,
            # The app drains first on SIGTERM (server/drain.py); this bounds other stops.
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        )
    return 0


def _new_password(name: str) -> str | None:
    password = os.environ.get("FILESVC_NEW_USER_PASSWORD") or getpass.getpass(
        f"password for {name}: "
    )
    if len(password) < 8:
        print("filesvc: passwords need at least 8 characters", file=sys.stderr)
        return None
    return password


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from filesvc.db import Database
    from filesvc.users import service
    from filesvc.users.errors import UsernameTaken
    from filesvc.users.models import Role, User

    db = Database(settings.resolved_database_url)
    try:
        async with db.sessionmaker() as session:
            if args.users_command == "create":
                if (password := _new_password(args.name)) is None:
                    return 2
                try:
                    user = await service.create_user(session, args.name, password, Role(args.role))
                except UsernameTaken:
                    print(f"filesvc: user {args.name!r} exists", file=sys.stderr)
                    return 1
                await session.commit()
                print(f"created {user.username} ({user.role.value}) id={user.id}")
                return 0
            if args.users_command == "list":
                for user in await service.list_users(session):
                    state = " disabled" if user.disabled else ""
                    print(f"{user.id}  {user.username:<24} {user.role.value}{state}")
                return 0
            found = await session.scalar(select(User).where(User.username == args.name))
            if found is None:
                print(f"filesvc: no user {args.name!r}", file=sys.stderr)
                return 1
            if args.users_command == "set-role":
                found.role = Role(args.role)
                message = f"{found.username} is now {found.role.value}"
            elif args.users_command == "set-password":
                if (password := _new_password(args.name)) is None:
                    return 2
                await service.set_password(found, password)
                message = f"new password set for {found.username}; older tokens no longer work"
            else:
                found.disabled = args.users_command == "disable"
                state = "disabled" if found.disabled else "enabled"
                message = f"{found.username} is {state}"
            await session.commit()
            print(message)
    finally:
        await db.dispose()
    return 0


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_users(settings, args))


async def _gc(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from filesvc.db import Database
    from filesvc.maintenance.common import Progress
    from filesvc.maintenance.gc import collect_garbage
    from filesvc.storage.base import StorageError
    from filesvc.storage.factory import build_storage

    db = Database(settings.resolved_database_url)
    storage = build_storage(settings)
    progress = Progress()
    try:
        sweep = await collect_garbage(
            db,
            storage,
            grace=args.grace,
            now=datetime.now(UTC),
            dry_run=args.dry_run,
            progress=progress,
        )
    except StorageError as exc:
        print(f"filesvc: gc stopped: {exc}", file=sys.stderr)
        return 2
    finally:
        await storage.aclose()
        await db.dispose()
    freed = sum(f.size or 0 for f in sweep.removed)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"gc: {verb} {len(sweep.removed)} item(s), {freed} bytes; "
        f"{len(sweep.problems)} file(s) whose blob is missing"
    )
    return 1 if sweep.problems else 0


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_gc(settings, args))


async def _scrub(settings: Settings, args: argparse.Namespace) -> int:
    from filesvc.db import Database
    from filesvc.maintenance.common import Progress
    from filesvc.maintenance.scrub import scrub
    from filesvc.storage.factory import build_storage

    db = Database(settings.resolved_database_url)
    storage = build_storage(settings)
    try:
        report = await scrub(db, storage, sample=args.sample, progress=Progress())
    finally:
        await storage.aclose()
        await db.dispose()
    print(
        f"scrub: checked {report.checked} file(s), {report.bytes_read} bytes; "
        f"{len(report.problems)} problem(s)"
    )
    return 1 if report.problems else 0


def cmd_scrub(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_scrub(settings, args))


def _grace(text: str) -> timedelta:
    from filesvc.maintenance.common import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filesvc", description="File storage and streaming service"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (migrates first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-migrate", action="store_true", help="skip the migration step")
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema")
    migrate.set_defaults(handler=cmd_migrate)

    roles = ["viewer", "editor", "admin"]
    users = commands.add_parser("users", help="manage users")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    create = users_commands.add_parser(
        "create", help="create a user (password from FILESVC_NEW_USER_PASSWORD or a prompt)"
    )
    create.add_argument("name")
    create.add_argument("--role", choices=roles, default="viewer")
    users_commands.add_parser("list", help="list users")
    set_role = users_commands.add_parser("set-role", help="change a user's role")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=roles)
    set_password = users_commands.add_parser(
        "set-password",
        help="set a user's password (from FILESVC_NEW_USER_PASSWORD or a prompt); "
        "their older tokens stop working",
    )
    set_password.add_argument("name")
    disable = users_commands.add_parser("disable", help="lock a user out, tokens included")
    disable.add_argument("name")
    enable = users_commands.add_parser("enable", help="let a disabled user sign in again")
    enable.add_argument("name")
    users.set_defaults(handler=cmd_users)

    gc = commands.add_parser(
        "gc",
        help="remove unfinished writes and blobs no file points at; report files whose "
        "blob is missing (exit status 1)",
    )
    gc.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    gc.add_argument(
        "--grace",
        type=_grace,
        default=timedelta(hours=1),
        help="leave alone what is younger than this: 0, 30s, 15m, 1h (default), 2d",
    )
    gc.set_defaults(handler=cmd_gc)

    scrub = commands.add_parser(
        "scrub",
        help="re-read stored blobs and check their SHA-256; exit status 1 on any problem",
    )
    scrub.add_argument("--sample", type=_positive, help="check N files drawn at random")
    scrub.set_defaults(handler=cmd_scrub)

    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):
        return run(args.handler, args)  # a client of some server: no server settings
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as exc:
            # Names and reasons only: the values may be secrets (the settings hide them too).
            for error in exc.errors():
                name = "FILESVC_" + "_".join(str(part) for part in error["loc"]).upper()
                print(f"filesvc: invalid configuration: {name}: {error['msg']}", file=sys.stderr)
            return 2
    logging.config.dictConfig(_logging_config(settings))
    handler = args.handler
    return int(handler(settings, args))


if __name__ == "__main__":
    sys.exit(main())
