"""The `filesvc` command line, run as a user would: a real process per command."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def filesvc(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = (
        {key: value for key, value in os.environ.items() if not key.startswith("FILESVC_")}
        | {"FILESVC_DATA_DIR": str(data_dir)}
        | (env or {})
    )
    return subprocess.run(
        [sys.executable, "-m", "filesvc", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_then_manage_users(tmp_path: Path) -> None:
    assert filesvc(tmp_path, "migrate").returncode == 0
    created = filesvc(
        tmp_path,
        "users",
        "create",
        "erin",
        "--role",
        "editor",
        env={"FILESVC_NEW_USER_PASSWORD": "erin-password"},
    )
    assert created.returncode == 0, created.stderr
    assert "created erin (editor)" in created.stdout
    assert "erin-password" not in created.stdout + created.stderr

    duplicate = filesvc(
        tmp_path, "users", "create", "erin", env={"FILESVC_NEW_USER_PASSWORD": "erin-password"}
    )
    assert duplicate.returncode == 1

    assert filesvc(tmp_path, "users", "set-role", "erin", "admin").returncode == 0
    listing = filesvc(tmp_path, "users", "list")
    assert listing.returncode == 0
    assert "erin" in listing.stdout
    assert "admin" in listing.stdout

    with sqlite3.connect(tmp_path / "filesvc.db") as db:
        row = db.execute("SELECT role, password_hash FROM users WHERE username='erin'").fetchone()
    assert row[0] == "admin"
    assert row[1].startswith("$argon2id$")


def test_short_password_is_refused(tmp_path: Path) -> None:
    assert filesvc(tmp_path, "migrate").returncode == 0
    result = filesvc(tmp_path, "users", "create", "x", env={"FILESVC_NEW_USER_PASSWORD": "short"})
    assert result.returncode == 2
    assert "at least 8" in result.stderr


def test_several_workers_need_redis(tmp_path: Path) -> None:
    result = filesvc(tmp_path, "serve", "--workers", "2")
    assert result.returncode == 2
    assert "FILESVC_REDIS_URL" in result.stderr


def _user_row(data_dir: Path, name: str) -> tuple[int, str, int]:
    with sqlite3.connect(data_dir / "filesvc.db") as db:
        row: tuple[int, str, int] = db.execute(
            "SELECT disabled, password_hash, token_version FROM users WHERE username=?", (name,)
        ).fetchone()
    return row


def test_disable_enable_and_set_password(tmp_path: Path) -> None:
    assert filesvc(tmp_path, "migrate").returncode == 0
    env = {"FILESVC_NEW_USER_PASSWORD": "first-password"}
    assert filesvc(tmp_path, "users", "create", "dora", env=env).returncode == 0
    disabled_before, hash_before, version_before = _user_row(tmp_path, "dora")
    assert not disabled_before

    disabled = filesvc(tmp_path, "users", "disable", "dora")
    assert disabled.returncode == 0, disabled.stderr
    assert "dora is disabled" in disabled.stdout
    assert _user_row(tmp_path, "dora")[0]
    assert filesvc(tmp_path, "users", "enable", "dora").returncode == 0
    assert not _user_row(tmp_path, "dora")[0]

    changed = filesvc(
        tmp_path, "users", "set-password", "dora", env={"FILESVC_NEW_USER_PASSWORD": "second-pw"}
    )
    assert changed.returncode == 0, changed.stderr
    assert "second-pw" not in changed.stdout + changed.stderr
    _, hash_after, version_after = _user_row(tmp_path, "dora")
    assert hash_after != hash_before
    assert version_after == version_before + 1  # tokens issued before no longer work

    short = filesvc(
        tmp_path, "users", "set-password", "dora", env={"FILESVC_NEW_USER_PASSWORD": "short"}
    )
    assert short.returncode == 2
    assert _user_row(tmp_path, "dora")[1] == hash_after
    for command in ("disable", "enable", "set-password"):
        missing = filesvc(tmp_path, "users", command, "nobody", env=env)
        assert missing.returncode == 1
        assert "no user 'nobody'" in missing.stderr


def test_short_secret_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "only-twenty-eight-bytes-long"
    for command in (["serve"], ["migrate"]):
        result = filesvc(tmp_path, *command, env={"FILESVC_SECRET_KEY": secret})
        assert result.returncode == 2
        assert "FILESVC_SECRET_KEY" in result.stderr
        assert "at least 32 bytes" in result.stderr
        assert secret not in result.stdout + result.stderr
