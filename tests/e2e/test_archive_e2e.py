"""Zip archives end to end: `GET /archive?id=…` streamed by the real server to curl.

A zip is read from its end (the central directory), so every archive is saved to a file
first and only then checked with `unzip -t` and `zipfile`: neither can read a pipe.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
from .wire import bearer, connect, curl_put_file, request_head, reset_close, run_curl

pytestmark = pytest.mark.e2e

GiB = 1024 * MiB
# The server streams member data in 1 MiB reads and must not hold an archive in memory:
# a 2 GiB archive has to fit well under this.
PEAK_RSS_LIMIT_BYTES = 150 * MiB


def archive_url(server: RunningServer, *ids: str) -> str:
    return server.url("/api/v1/archive?" + "&".join(f"id={file_id}" for file_id in ids))


def upload_raw(
    server: RunningServer, user: User, curl: str, tmp_path: Path, path: Path, name: str
) -> dict[str, Any]:
    url = server.url(f"/api/v1/files/raw/{name}")
    file = curl_put_file(curl, tmp_path, user.token, path, url)
    assert file["visibility"] == "private"
    return file


def upload_bytes(server: RunningServer, user: User, name: str, data: bytes) -> dict[str, Any]:
    # Multipart, so the name can be anything (`../evil.txt`); a raw PUT's is a URL path.
    with server.client(user.token) as client:
        response = client.post("/api/v1/files", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    file: dict[str, Any] = response.json()
    assert file["name"] == name
    assert file["size"] == len(data)
    return file


def delete_files(server: RunningServer, user: User, files: list[dict[str, Any]]) -> None:
    with server.client(user.token) as client:
        for file in files:
            assert client.delete(f"/api/v1/files/{file['id']}").status_code == 204


def member_sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as member:
        while chunk := member.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


# --- the server process's memory and files ---------------------------------------------


def _listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:`port` (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        next(f)  # the header
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local == f"0100007F:{port:04X}":  # 0A: LISTEN
                return inode
    pytest.fail(f"no socket listens on 127.0.0.1:{port}")


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def serving_pid(server: RunningServer) -> int:
    """The process that holds the listening socket: the one whose memory counts.

    `python -m filesvc serve` runs uvicorn in-process with one worker today, but with a
    wrapper (a reloader, a worker manager, a shell) the Popen pid would only be a parent
    that never touches a request, and measuring it would prove nothing.
    """
    socket_link = f"socket:[{_listening_inode(server.port)}]"
    for pid in [server.process.pid, *_descendants(server.process.pid)]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == socket_link:
                    return pid
            except OSError:
                continue  # closed while we looked
    pytest.fail(f"neither the server process nor a child of it holds {socket_link}")


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:]
            assert unit == "kB"
            return int(value) * 1024
    pytest.fail(f"no VmHWM in /proc/{pid}/status")


def open_blobs(server: RunningServer, pid: int) -> list[str]:
    """Files under the blob store that the server process has open."""
    blobs = str(server.blobs_dir.resolve()) + os.sep
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(blobs):
            paths.append(target)
    return paths


# --- the tests -------------------------------------------------------------------------


@pytest.fixture
def one_gib_file(tmp_path: Path) -> Iterator[LocalFile]:
    file = make_random_file(tmp_path / "big.bin", GiB)
    yield file
    file.path.unlink(missing_ok=True)  # pytest keeps the last runs' temp dirs


def test_a_2_gib_archive_streams_whole_in_flat_memory(
    server: RunningServer,
    editor: User,
    one_gib_file: LocalFile,
    curl: str,
    unzip: str,
    tmp_path: Path,
) -> None:
    pid = serving_pid(server)
    # Two rows, one name: the zip must still hold two distinct members.
    files = [upload_raw(server, editor, curl, tmp_path, one_gib_file.path, "big.bin")]
    files.append(upload_raw(server, editor, curl, tmp_path, one_gib_file.path, "big.bin"))
    assert [f["sha256"] for f in files] == [one_gib_file.sha256] * 2
    assert files[0]["id"] != files[1]["id"]
    archive_path = tmp_path / "archive.zip"
    peak_before = peak_rss_bytes(pid)  # start-up and the two uploads
    try:
        # Saved to disk: `unzip` and `zipfile` seek to the central directory at the end.
        url = archive_url(server, *(f["id"] for f in files))
        result = run_curl(
            curl, tmp_path, "-H", bearer(editor.token), url, output=archive_path, timeout=300
        )
        peak = peak_rss_bytes(pid)
        assert result.returncode == 0, result.stderr
        assert result.status == 200, archive_path.read_bytes()[:2000]
        assert result.header("content-type") == "application/zip"
        assert result.header("transfer-encoding") is None
        length = result.header("content-length")
        assert length is not None
        assert archive_path.stat().st_size == int(length)
        assert int(length) > 2 * GiB
        assert peak < PEAK_RSS_LIMIT_BYTES, (
            f"the server's peak RSS was {peak / MiB:.1f} MiB, over "
            f"{PEAK_RSS_LIMIT_BYTES / MiB:.0f} MiB: it held the archive in memory"
        )
        print(
            f"server peak RSS (VmHWM): {peak_before / MiB:.1f} MiB before the archive, "
            f"{peak / MiB:.1f} MiB after it"
        )

        # unzip reads the central directory and checks every member's CRC-32 against its data.
        tested = subprocess.run(
            [unzip, "-t", str(archive_path)], capture_output=True, timeout=120, check=False
        )
        assert tested.returncode == 0, tested.stdout.decode(errors="replace")[-4000:]
        assert b"No errors detected" in tested.stdout

        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            assert [m.filename for m in members] == ["big.bin", "big (1).bin"]
            for member in members:
                assert member.file_size == GiB, member.filename
                assert member.compress_type == zipfile.ZIP_STORED, member.filename
            # A CRC only proves a member is what the server meant to send; the bytes must
            # also be the upload's. Both members hold the same bytes, so the second, read
            # through the offsets past the first, is the one worth the three seconds.
            assert member_sha256(archive, "big (1).bin") == one_gib_file.sha256
    finally:
        archive_path.unlink(missing_ok=True)
        delete_files(server, editor, files)


def test_a_small_archive_holds_each_file_once_under_safe_unique_names(
    server: RunningServer, editor: User, tmp_path: Path
) -> None:
    uploads = [
        ("data.bin", os.urandom(5 * MiB)),
        ("data.bin", b"x"),
        ("../evil.txt", b""),
    ]
    files = [upload_bytes(server, editor, name, data) for name, data in uploads]
    ids = [f["id"] for f in files]

    with server.client(editor.token) as client:
        # A repeated id gives its file once, in the place first asked for.
        response = client.get("/api/v1/archive", params=[("id", i) for i in [*ids, ids[0]]])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-disposition"] == 'attachment; filename="files.zip"'

    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert names == ["data.bin", "data (1).bin", ".._evil.txt"]
        assert len({name.casefold() for name in names}) == len(names)
        for name in names:
            assert "/" not in name
            assert "\\" not in name
        assert archive.testzip() is None
        out = tmp_path / "out"
        archive.extractall(out)

    # Every member landed inside `out`, directly, with the bytes that were uploaded.
    extracted = {
        Path(dirpath, name).relative_to(out).as_posix()
        for dirpath, _dirs, found in os.walk(out)
        for name in found
    }
    assert extracted == set(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    for name, (_uploaded_name, data) in zip(names, uploads, strict=True):
        path = out / name
        assert path.stat().st_size == len(data), name
        assert sha256_of(path) == hashlib.sha256(data).hexdigest(), name


@pytest.mark.parametrize("close", ["reset", "close", "half-close"])
def test_a_client_gone_mid_archive_leaves_the_server_healthy(
    server: RunningServer,
    editor: User,
    big_file: LocalFile,
    curl: str,
    tmp_path: Path,
    close: str,
) -> None:
    pid = serving_pid(server)
    file = upload_raw(server, editor, curl, tmp_path, big_file.path, "big.bin")
    request_id = "e2e-" + os.urandom(8).hex()
    head = request_head(
        "GET",
        f"/api/v1/archive?id={file['id']}",
        [("Authorization", f"Bearer {editor.token}"), ("X-Request-ID", request_id)],
    )

    # Closed at the end in any case; the cuts below come first (a second close is a no-op).
    with connect(server) as sock:
        sock.sendall(head)
        received = 0
        # 4 MiB of a 100 MiB archive: the server is mid-member, not done and buffered.
        while received < 4 * MiB:
            chunk = sock.recv(256 * 1024)
            assert chunk, "the server closed the archive early"
            received += len(chunk)
        assert open_blobs(server, pid), "the server was not reading the blob any more"
        if close == "reset":
            reset_close(sock)  # RST at once, like a killed client or a dropped network
        elif close == "close":
            sock.close()  # what a client library does; unread bytes make the kernel send RST
        else:
            # FIN only, the socket stays open: the server must take the end of the
            # request stream for a gone client rather than block on a full send buffer.
            sock.shutdown(socket.SHUT_WR)

        # The access line comes once the server has given up on the response; any
        # traceback it logged on the way is in the log by then, for the `server` fixture.
        wait_for(
            lambda: f"id={request_id}" in server.stderr_path.read_text(errors="replace"),
            timeout=15,
            what="the archive's access log line",
        )
        # The zip thread closed the member's blob: nothing stays open for a gone client.
        wait_for(lambda: not open_blobs(server, pid), timeout=10, what="the blob to be closed")
    server.assert_serving()

    # The next archive, of the same file, comes whole.
    archive_path = tmp_path / "after.zip"
    result = run_curl(
        curl,
        tmp_path,
        "-H",
        bearer(editor.token),
        archive_url(server, file["id"]),
        output=archive_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.status == 200
    assert archive_path.stat().st_size == int(result.header("content-length") or -1)
    with zipfile.ZipFile(archive_path) as archive:
        assert archive.namelist() == ["big.bin"]
        assert member_sha256(archive, "big.bin") == big_file.sha256
    archive_path.unlink()
    delete_files(server, editor, [file])


def test_one_unreadable_id_fails_the_whole_archive_before_any_byte(
    server: RunningServer, editor: User, curl: str, tmp_path: Path
) -> None:
    mine = upload_bytes(server, editor, "mine.txt", b"mine\n")
    stranger = create_user(server, "editor")
    theirs = upload_bytes(server, stranger, "theirs.txt", b"theirs\n")
    assert theirs["visibility"] == "private"

    # Signed in: the other editor's private file is as absent as an unknown id.
    for ids in ([mine["id"], theirs["id"]], [mine["id"], "no-such-file"]):
        refused = run_curl(curl, tmp_path, "-H", bearer(editor.token), archive_url(server, *ids))
        assert refused.returncode == 0, refused.stderr
        assert refused.status == 404, refused.body[:2000]
        assert refused.header("content-type") == "application/json"
        assert not refused.body.startswith(b"PK")  # not one byte of a zip
        assert refused.json()["code"] == "file_not_found"

    # Anonymous: 401, even for ids that exist, so an id's existence never leaks.
    anonymous = run_curl(curl, tmp_path, archive_url(server, mine["id"]))
    assert anonymous.status == 401
    assert anonymous.header("content-type") == "application/json"
    assert anonymous.json()["code"] == "not_authenticated"

    # No id at all is the client's mistake.
    empty = run_curl(curl, tmp_path, "-H", bearer(editor.token), server.url("/api/v1/archive"))
    assert empty.status == 400
    assert empty.json()["code"] == "invalid_archive_request"

    # The file's owner does get it, here with `?access_token=` instead of a header.
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        own = client.get(
            "/api/v1/archive", params={"id": theirs["id"], "access_token": stranger.token}
        )
    assert own.status_code == 200, own.text
    with zipfile.ZipFile(io.BytesIO(own.content)) as archive:
        assert archive.read("theirs.txt") == b"theirs\n"
