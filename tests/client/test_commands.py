"""The client commands' argument and setup errors, run as a user would: a real process,
a clear message on stderr, nothing on stdout, and the exit code (2 for bad arguments)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.server import free_port


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def filesvc(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FILESVC_")}
    env |= {"XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state")}
    return subprocess.run(
        [sys.executable, "-m", "filesvc", *args],
        env=env,
        cwd=home,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_upload_names_every_missing_file_and_sends_nothing(home: Path) -> None:
    (home / "here.txt").write_text("x")
    result = filesvc(home, "upload", "here.txt", "gone.txt", "also-gone", "--token", "t")
    assert result.returncode == 2
    assert "no such file: gone.txt, also-gone" in result.stderr
    assert result.stdout == ""
    assert not (home / "state").exists()


def test_upload_of_a_folder_is_refused(home: Path) -> None:
    result = filesvc(home, "upload", ".", "--token", "t")
    assert result.returncode == 2
    assert "no such file: ." in result.stderr


def test_upload_without_a_token_says_how_to_sign_in(home: Path) -> None:
    (home / "a.txt").write_text("x")
    result = filesvc(home, "upload", "a.txt", "--server", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "not signed in to http://127.0.0.1:9" in result.stderr
    assert "filesvc login --server http://127.0.0.1:9" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload"], "the following arguments are required: FILE"),
        (["upload", "a", "--chunk-size", "10"], "between 64K and 1G"),
        (["upload", "a", "--chunk-size", "lots"], "not a size: 'lots'"),
        (["upload", "a", "--limit-rate", "0"], "not a size: '0'"),
        (["upload", "a", "--visibility", "secret"], "invalid choice: 'secret'"),
        (["download"], "the following arguments are required: ID"),
        (["download", "x", "--server", "example.com"], "not a server URL: 'example.com'"),
        (["login", "--server", "ftp://example.com"], "not a server URL"),
    ],
)
def test_bad_arguments_exit_2(home: Path, args: list[str], message: str) -> None:
    result = filesvc(home, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_login_without_a_terminal_needs_the_password_from_somewhere(home: Path) -> None:
    result = filesvc(home, "login", "--username", "erin")
    assert result.returncode == 2
    assert "pass --password-stdin or set FILESVC_PASSWORD" in result.stderr
    result = filesvc(home, "login")
    assert result.returncode == 2
    assert "pass --username or set FILESVC_USERNAME" in result.stderr


def test_a_server_that_is_not_there_is_named(home: Path) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    result = filesvc(home, "download", "some-id", "--server", server)
    assert result.returncode == 1
    assert f"cannot connect to {server}" in result.stderr
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr

    result = filesvc(
        home, "login", "--server", server, "--username", "erin", "--password-stdin", stdin="pw\n"
    )
    assert result.returncode == 1
    assert f"cannot connect to {server}" in result.stderr
    assert not (home / "config").exists()


def test_an_expired_login_says_so(home: Path) -> None:
    credentials = home / "config" / "filesvc" / "credentials.json"
    credentials.parent.mkdir(parents=True)
    server = "http://127.0.0.1:9"
    entry = {"token": "old", "username": "erin", "expires_at": time.time() - 60}
    credentials.write_text(json.dumps({"servers": {server: entry}, "default_server": server}))
    (home / "a.txt").write_text("x")

    result = filesvc(home, "upload", "a.txt")

    assert result.returncode == 1
    assert f"the token for {server} has expired: run `filesvc login --server {server}`" in (
        result.stderr
    )
