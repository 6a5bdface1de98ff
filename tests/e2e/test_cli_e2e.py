"""`filesvc login`, `upload` and `download` against a real server on both stacks: a killed
upload run again sends only what the server lacks, a cut download is completed with a
Range request, and every failure is one clear line and a non-zero exit."""

from __future__ import annotations

import contextlib
import math
import os
import pty
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .cli import AccessLog, Cli
from .conftest import on_both_stacks
from .server import (
    LocalFile,
    MiB,
    RunningServer,
    User,
    create_user,
    make_random_file,
    sha256_of,
    wait_for,
)

pytestmark = pytest.mark.e2e

server_process = on_both_stacks()

TUS = {"Tus-Resumable": "1.0.0"}
DEADLINE = 60.0


@pytest.fixture
def cli(server: RunningServer, editor: User, tmp_path: Path) -> Cli:
    """The CLI as the module's editor (FILESVC_TOKEN), in a home of its own."""
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, server, editor.token)


def killed(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[bytes]]]:
    """CLI processes a test starts; any still running at the end are killed by pid."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        killed(process)


def upload_with_api(server: RunningServer, user: User, file: LocalFile) -> str:
    with server.client(user.token, timeout=120) as client, file.path.open("rb") as f:
        response = client.put(f"/api/v1/files/raw/{file.path.name}", content=f)
    assert response.status_code == 201, response.text
    file_id: str = response.json()["id"]
    return file_id


# --- login, upload, download ---------------------------------------------------------


def test_login_then_upload_and_download_with_the_stored_token(
    server: RunningServer, editor: User, tmp_path: Path
) -> None:
    cli = Cli(tmp_path, server)  # no FILESVC_TOKEN: everything goes through `login`
    signed_in = cli.run(
        "login", "--username", editor.username, "--password-stdin", stdin=editor.password + "\n"
    )
    assert signed_in.returncode == 0, signed_in.stderr
    assert f"signed in to {server.base_url} as {editor.username} (editor)" in signed_in.stdout
    assert editor.password not in signed_in.stdout + signed_in.stderr
    assert stat.S_IMODE(cli.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.credentials_file.parent.stat().st_mode) == 0o700

    source = tmp_path / "src"
    source.mkdir()
    files = [
        make_random_file(source / "empty.bin", 0),
        make_random_file(source / "notes.txt", 1000),
        make_random_file(source / "big photo.jpg", 5 * MiB + 1),
    ]
    uploaded = cli.run("upload", *(str(f.path) for f in files), "--visibility", "internal")

    assert uploaded.returncode == 0, uploaded.stderr
    uploaded.assert_plain()  # stdout and stderr are pipes here
    ids = uploaded.lines()
    assert len(ids) == len(files)
    for file_id, file in zip(ids, files, strict=True):
        row = server.get_file(file_id)
        assert (row["name"], row["size"], row["sha256"]) == (file.path.name, file.size, file.sha256)
        assert row["visibility"] == "internal"
        assert row["owner_id"] == editor.id
    assert "big photo.jpg: 100%" in uploaded.stderr
    assert cli.upload_state() == {}  # finished uploads leave nothing to resume

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for file_id, file in zip(ids, files, strict=True):
        got = cli.run("download", file_id, "-o", str(downloads))
        assert got.returncode == 0, got.stderr
        got.assert_plain()
        assert got.lines() == [str(downloads / file.path.name)]
        assert sha256_of(downloads / file.path.name) == file.sha256
    assert sorted(p.name for p in downloads.iterdir()) == sorted(f.path.name for f in files)


def test_download_into_the_current_folder_under_a_safe_name(
    server: RunningServer, editor: User, cli: Cli, tmp_path: Path
) -> None:
    file = make_random_file(tmp_path / "report.pdf", 3000)
    file_id = upload_with_api(server, editor, file)
    with server.client(editor.token) as client:
        renamed = client.patch(f"/api/v1/files/{file_id}", json={"name": "../../.profile"})
    assert renamed.status_code == 200, renamed.text

    got = cli.run("download", file_id)

    assert got.returncode == 0, got.stderr
    assert got.lines() == [str(cli.home / "profile")]
    assert sha256_of(cli.home / "profile") == file.sha256
    again = cli.run("download", file_id)  # never over a file it did not name itself
    assert again.returncode == 2
    assert "profile exists: pass -o" in again.stderr


def test_on_a_terminal_bars_go_to_stderr_and_ids_still_to_stdout(
    server: RunningServer, cli: Cli, tmp_path: Path
) -> None:
    """`ID=$(filesvc upload f)` in a terminal: the bar on the terminal, the id in $ID."""
    file = make_random_file(tmp_path / "a.bin", 3 * MiB)
    terminal, terminal_side = pty.openpty()
    shown = bytearray()

    def read_terminal() -> None:
        with contextlib.suppress(OSError):  # EIO once the process closed its side
            while chunk := os.read(terminal, 65536):
                shown.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        process = subprocess.run(
            cli.command("upload", str(file.path)),
            env=cli.env() | {"TERM": "xterm-256color", "COLUMNS": "100"},
            cwd=cli.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal_side,
            timeout=180,
            check=False,
        )
    finally:
        os.close(terminal_side)
        reader.join(timeout=30)
        os.close(terminal)

    assert process.returncode == 0, shown.decode(errors="replace")
    [file_id] = process.stdout.decode().splitlines()
    assert server.get_file(file_id)["sha256"] == file.sha256
    screen = shown.decode(errors="replace")
    assert "━" in screen  # rich's bar
    assert "\x1b[" in screen
    assert file_id in screen  # the note "stored as <id>", above the bar


# --- an upload killed midway ----------------------------------------------------------


def test_an_upload_killed_midway_sends_only_the_rest_when_run_again(
    server: RunningServer,
    editor: User,
    cli: Cli,
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    file = make_random_file(tmp_path / "video.mp4", 24 * MiB)
    chunk = MiB
    whole_run = AccessLog(server)
    first = cli.start(
        "upload", str(file.path), "--chunk-size", "1M", "--limit-rate", "3M", name="first"
    )
    background.append(first)

    def upload_url() -> str | None:
        entries = list(cli.upload_state().values())
        return entries[0]["url"] if entries else None

    wait_for(lambda: upload_url() is not None, timeout=DEADLINE, what="the upload's URL")
    url = upload_url()
    assert url is not None

    def server_offset() -> int | None:
        response = httpx.head(url, headers=TUS | server.auth(editor.token), timeout=10)
        if response.status_code != 200:
            return None  # e.g. 423 while a chunk is being written
        return int(response.headers["upload-offset"])

    wait_for(
        lambda: (server_offset() or 0) > 0, timeout=DEADLINE, what="the first chunk to be stored"
    )
    killed(first)
    assert first.returncode == -signal.SIGKILL
    wait_for(lambda: server_offset() is not None, timeout=DEADLINE, what="HEAD to answer")
    stored = server_offset()
    assert stored is not None
    assert 0 < stored < file.size, "the upload was not cut midway: make it slower"
    path = httpx.URL(url).path

    def first_run_clients() -> set[str]:
        return {client for status, client in whole_run.lines("PATCH", path) if status == 204}

    # Its stored chunks were answered 204 on its connection; the one cut midway may be
    # logged late, so the second run's requests are told apart by their connection.
    wait_for(lambda: bool(first_run_clients()), timeout=DEADLINE, what="the first run's log")
    first_clients = first_run_clients()
    log = AccessLog(server)

    second = cli.run("upload", str(file.path), "--chunk-size", "1M")

    assert second.returncode == 0, second.stderr
    second.assert_plain()
    [file_id] = second.lines()
    assert f"resuming at byte {stored} of {file.size}" in second.stderr
    assert f"{file.size - stored} bytes sent by this run" in second.stderr
    patches = [status for status, client in log.lines("PATCH", path) if client not in first_clients]
    assert patches == [204] * math.ceil((file.size - stored) / chunk)
    assert not log.lines("POST", "/api/v1/uploads"), "it started a new upload"
    row = server.get_file(file_id)
    assert (row["size"], row["sha256"], row["name"]) == (file.size, file.sha256, "video.mp4")
    assert server_offset() is None  # the upload became a file; its state is gone
    assert cli.upload_state() == {}


# --- downloads cut and continued ------------------------------------------------------


def start_slow_download(
    cli: Cli, file_id: str, target: Path, background: list[subprocess.Popen[bytes]]
) -> Path:
    """Start a 2 MiB/s download, kill it once some bytes are in `<target>.part`, and wait
    for the server to log the end of that request (so a later mark does not see it)."""
    log = AccessLog(cli.server)
    process = cli.start("download", file_id, "-o", str(target), "--limit-rate", "2M", name="cut")
    background.append(process)
    partial = target.with_name(target.name + ".part")
    wait_for(
        lambda: partial.is_file() and partial.stat().st_size >= 2 * MiB,
        timeout=DEADLINE,
        what="the download to be under way",
    )
    killed(process)
    content = f"/api/v1/files/{file_id}/content"
    wait_for(lambda: bool(log.lines("GET", content)), timeout=DEADLINE, what="the cut request")
    return partial


def test_download_continue_completes_a_cut_download_with_a_range(
    server: RunningServer,
    editor: User,
    cli: Cli,
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    file = make_random_file(tmp_path / "data.bin", 16 * MiB)
    file_id = upload_with_api(server, editor, file)
    target = cli.home / "data.bin"
    partial = start_slow_download(cli, file_id, target, background)
    have = partial.stat().st_size
    assert 0 < have < file.size
    assert not target.exists()  # only complete files take the real name
    log = AccessLog(server)

    got = cli.run("download", file_id, "-o", str(target), "--continue")

    assert got.returncode == 0, got.stderr
    assert got.lines() == [str(target)]
    assert f"continuing at byte {have} of {file.size}" in got.stderr
    assert sha256_of(target) == file.sha256
    assert not partial.exists()
    assert [s for s, _ in log.lines("GET", f"/api/v1/files/{file_id}/content")] == [206]


def test_download_continue_completes_a_truncated_file(
    server: RunningServer, editor: User, cli: Cli, tmp_path: Path
) -> None:
    file = make_random_file(tmp_path / "archive.tar", 6 * MiB + 123)
    file_id = upload_with_api(server, editor, file)
    target = cli.home / "archive.tar"
    assert cli.run("download", file_id).returncode == 0
    with target.open("r+b") as f:
        f.truncate(2 * MiB)
    log = AccessLog(server)

    got = cli.run("download", file_id, "--continue")

    assert got.returncode == 0, got.stderr
    assert f"continuing at byte {2 * MiB} of {file.size}" in got.stderr
    assert sha256_of(target) == file.sha256
    assert [s for s, _ in log.lines("GET", f"/api/v1/files/{file_id}/content")] == [206]


def test_a_file_changed_on_the_server_is_downloaded_again_not_spliced(
    server: RunningServer,
    editor: User,
    cli: Cli,
    tmp_path: Path,
    background: list[subprocess.Popen[bytes]],
) -> None:
    file = make_random_file(tmp_path / "old.bin", 16 * MiB)
    file_id = upload_with_api(server, editor, file)
    target = cli.home / "data.bin"
    start_slow_download(cli, file_id, target, background)
    new = make_random_file(tmp_path / "new.bin", 16 * MiB)
    with server.client(editor.token, timeout=120) as client, new.path.open("rb") as f:
        replaced = client.put(f"/api/v1/files/{file_id}/content", content=f)
    assert replaced.status_code == 200, replaced.text
    log = AccessLog(server)

    got = cli.run("download", file_id, "-o", str(target), "--continue")

    assert got.returncode == 0, got.stderr
    assert "the file changed on the server" in got.stderr
    assert sha256_of(target) == new.sha256
    # If-Range named the old ETag: the server sent the whole new file at once.
    assert [s for s, _ in log.lines("GET", f"/api/v1/files/{file_id}/content")] == [200]


# --- errors ---------------------------------------------------------------------------


def test_errors_are_one_clear_line_and_a_non_zero_exit(
    server: RunningServer, editor: User, cli: Cli, tmp_path: Path
) -> None:
    file = make_random_file(tmp_path / "a.bin", 1000)
    viewer = create_user(server, "viewer")

    def fails(result_cli: Cli, *args: str, expect: str, stdin: str = "") -> None:
        result = result_cli.run(*args, stdin=stdin)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert expect in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        result.assert_plain()

    as_viewer = Cli(cli.home, server, viewer.token)
    fails(as_viewer, "upload", str(file.path), expect="the server answered 403")
    assert as_viewer.upload_state() == {}
    bad_token = Cli(cli.home, server, "not-a-token")
    fails(bad_token, "upload", str(file.path), expect="not signed in to")
    fails(bad_token, "upload", str(file.path), expect="filesvc login --server")
    fails(cli, "download", "no-such-id", expect=f"no file no-such-id on {server.base_url}")
    fails(as_viewer, "download", upload_with_api(server, editor, file), expect="no file")
    (tmp_path / "not-a-folder").write_text("x")
    file_id = upload_with_api(server, editor, file)
    fails(
        cli,
        "download",
        file_id,
        "-o",
        str(tmp_path / "not-a-folder" / "a.bin"),
        expect="cannot write",
    )
    (tmp_path / "other").mkdir()
    fails(
        Cli(tmp_path / "other", server),
        "login",
        "--username",
        editor.username,
        "--password-stdin",
        stdin="wrong password\n",
        expect=f"{server.base_url} refused the username or password",
    )
