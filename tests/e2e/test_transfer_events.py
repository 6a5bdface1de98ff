"""Live progress against a real server: watched while the bytes move, failures included."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import on_both_stacks
from .server import (
    LocalFile,
    MiB,
    RunningServer,
    User,
    create_user,
    make_random_file,
    wait_for,
)
from .watch import Arrival, Watcher
from .wire import bearer, connect, junk, request_head, run_curl

pytestmark = pytest.mark.e2e


# Progress is counted off the socket, so it must look the same whichever store writes.
server_process = on_both_stacks()


TRANSFER_BYTES = 200 * MiB
# The client's pace: on a fast machine 200 MiB cross loopback in a fraction of a second,
# fewer than five 100 ms progress intervals. At 100 MB/s the test sees the throttle at
# work whatever the machine; the server does nothing differently.
CURL_RATE = "100M"


@pytest.fixture(scope="module")
def transfer_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFile]:
    file = make_random_file(tmp_path_factory.mktemp("transfer") / "t.bin", TRANSFER_BYTES)
    yield file
    file.path.unlink(missing_ok=True)


def watcher(server: RunningServer, user: User, transfer_id: str) -> Watcher:
    url = server.url(f"/api/v1/transfers/{transfer_id}/events")
    return Watcher(url, user.token).start()


def progress(arrivals: list[Arrival], state: str) -> list[Arrival]:
    return [
        a
        for a in arrivals
        if a.event.event == "progress"
        and a.event.data["state"] == state
        and a.event.data["bytes"] < a.event.data["total"]
    ]


def test_an_upload_reports_progress_before_it_answers(
    server: RunningServer, editor: User, curl: str, transfer_file: LocalFile, tmp_path: Path
) -> None:
    watching = watcher(server, editor, "e2e-upload")
    result = run_curl(
        curl,
        tmp_path,
        "--limit-rate", CURL_RATE,
        "-H", bearer(editor.token),
        "-H", "X-Transfer-Id: e2e-upload",
        "-F", f"file=@{transfer_file.path}",
        server.url("/api/v1/files"),
    )  # fmt: skip
    answered = time.monotonic()
    assert result.status == 201, result.body
    assert result.header("x-transfer-id") == "e2e-upload"
    watching.join()

    before_answer = [a for a in progress(watching.arrivals, "receiving") if a.at < answered]
    assert len(before_answer) >= 5, [a.event.data for a in watching.arrivals]
    counts = [a.event.data["bytes"] for a in watching.arrivals if a.event.event == "progress"]
    assert counts == sorted(counts)
    # About ten a second at most (plus the first and the last).
    span = watching.arrivals[-1].at - watching.arrivals[0].at
    assert len(counts) <= span * 10 + 4
    last_progress = [e for e in watching.events if e.event == "progress"][-1]
    assert last_progress.data["bytes"] == last_progress.data["total"]
    complete = watching.events[-1]
    assert complete.event == "complete"
    assert complete.data["file"]["sha256"] == transfer_file.sha256 == result.json()["sha256"]
    assert complete.data["file"] == result.json()

    # A late watcher gets the end at once, then the stream closes.
    started = time.monotonic()
    late = watcher(server, editor, "e2e-upload").join(timeout=5)
    assert time.monotonic() - started < 2
    assert [e.event for e in late] == ["complete"]


def test_a_download_reports_sending_progress(
    server: RunningServer, editor: User, curl: str, transfer_file: LocalFile, tmp_path: Path
) -> None:
    with server.client(editor.token, timeout=120) as client, transfer_file.path.open("rb") as f:
        created = client.put("/api/v1/files/raw/down.bin", content=f)
    assert created.status_code == 201, created.text
    watching = watcher(server, editor, "e2e-download")
    result = run_curl(
        curl,
        tmp_path,
        "--limit-rate", CURL_RATE,
        "-H", bearer(editor.token),
        server.url(created.json()["content_url"] + "?transfer_id=e2e-download"),
        output=Path(os.devnull),
    )  # fmt: skip
    assert result.status == 200
    assert result.header("x-transfer-id") == "e2e-download"
    events = watching.join()
    assert len(progress(watching.arrivals, "sending")) >= 5
    assert events[-1].event == "complete"
    assert events[-1].data["bytes"] == events[-1].data["total"] == TRANSFER_BYTES


def test_a_rejected_upload_fails(
    limited_server: RunningServer, limited_editor: User, curl: str, tmp_path: Path
) -> None:
    big = make_random_file(tmp_path / "big.bin", 12 * MiB)
    watching = watcher(limited_server, limited_editor, "e2e-too-large")
    result = run_curl(
        curl,
        tmp_path,
        "-H", bearer(limited_editor.token),
        "-H", "X-Transfer-Id: e2e-too-large",
        "-T", str(big.path),
        limited_server.url("/api/v1/files/raw/big.bin"),
    )  # fmt: skip
    assert result.status == 413
    [failed] = watching.join()[-1:]
    assert failed.event == "failed"
    assert failed.data["code"] == "upload_too_large" == result.json()["code"]


def test_a_checksum_mismatch_fails(
    server: RunningServer, editor: User, curl: str, tmp_path: Path
) -> None:
    small = make_random_file(tmp_path / "small.bin", 3 * MiB)
    watching = watcher(server, editor, "e2e-checksum")
    result = run_curl(
        curl,
        tmp_path,
        "-H", bearer(editor.token),
        "-H", "X-Transfer-Id: e2e-checksum",
        "-H", "X-Checksum-SHA256: " + "0" * 64,
        "-T", str(small.path),
        server.url("/api/v1/files/raw/small.bin"),
    )  # fmt: skip
    assert result.status == 400
    failed = watching.join()[-1]
    assert failed.event == "failed"
    assert failed.data["code"] == "checksum_mismatch" == result.json()["code"]
    assert failed.data["detail"] == result.json()["detail"]


def test_a_client_that_goes_away_fails_the_transfer(server: RunningServer, editor: User) -> None:
    watching = watcher(server, editor, "e2e-gone")
    head = request_head(
        "PUT",
        "/api/v1/files/raw/gone.bin",
        [
            ("Authorization", f"Bearer {editor.token}"),
            ("Content-Length", str(50 * MiB)),
            ("X-Transfer-Id", "e2e-gone"),
        ],
    )
    sock = connect(server)
    try:
        sock.sendall(head)
        for chunk in junk(8 * MiB):
            sock.sendall(chunk)
        wait_for(
            lambda: bool(progress(watching.arrivals, "receiving")),
            timeout=10,
            what="progress of the upload",
        )
    finally:
        sock.close()
    failed = watching.join()[-1]
    assert failed.event == "failed"
    assert failed.data["code"] == "upload_incomplete"
    assert 0 < failed.data["bytes"] < 50 * MiB


def test_a_websocket_watches_the_same_events(
    server: RunningServer, editor: User, tmp_path: Path
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    ws_url = server.url("/api/v1/transfers/e2e-ws/ws").replace("http://", "ws://")
    other = create_user(server, "editor")
    with pytest.raises(InvalidStatus) as anonymous:  # noqa: SIM117
        with ws_connect(ws_url, open_timeout=10):
            pass
    assert anonymous.value.response.status_code == 401
    messages: list[dict[str, object]] = []
    with ws_connect(f"{ws_url}?access_token={editor.token}", open_timeout=10) as socket:
        # Watched by the editor now (an unknown id is reserved for its first watcher).
        with pytest.raises(InvalidStatus) as refused:  # noqa: SIM117
            with ws_connect(f"{ws_url}?access_token={other.token}", open_timeout=10):
                pass
        assert refused.value.response.status_code == 404
        with server.client(editor.token) as client:
            response = client.put(
                "/api/v1/files/raw/ws.bin",
                content=os.urandom(4 * MiB),
                headers={"X-Transfer-Id": "e2e-ws"},
            )
        assert response.status_code == 201
        for raw in socket:
            messages.append(json.loads(raw))
            if messages[-1]["event"] in ("complete", "failed"):
                break
    assert messages[0]["event"] == "progress"
    assert messages[-1] == {"event": "complete", "data": messages[-1]["data"]}
    data = messages[-1]["data"]
    assert isinstance(data, dict)
    assert data["file"] == response.json()


def test_streams_end_when_their_clients_go_away(server: RunningServer) -> None:
    """Sixteen streams (the per-user cap) opened and dropped, twice: the slots come back
    as soon as the clients go, so nothing of the first round is left behind."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    user = create_user(server, "viewer")
    for _round in range(2):
        sockets = []
        for n in range(16):
            sock = connect(server)
            path = f"/api/v1/transfers/gone-{_round}-{n}/events"
            sock.sendall(request_head("GET", path, [("Authorization", f"Bearer {user.token}")]))
            assert sock.recv(64).startswith(b"HTTP/1.1 200"), n
            sockets.append(sock)
        with server.client(user.token) as client:
            over = client.get("/api/v1/events")
        assert over.status_code == 429
        assert over.json()["code"] == "too_many_streams"
        # A WebSocket counts against the same cap, and is denied with the same answer.
        ws_url = server.url(f"/api/v1/transfers/gone-{_round}-ws/ws").replace("http://", "ws://")
        with pytest.raises(InvalidStatus) as denied:  # noqa: SIM117
            with ws_connect(f"{ws_url}?access_token={user.token}", open_timeout=10):
                pass
        assert denied.value.response.status_code == 429
        assert json.loads(denied.value.response.body or b"{}")["code"] == "too_many_streams"
        for sock in sockets:
            sock.close()

        def slots_free() -> bool:
            with (
                server.client(user.token) as client,
                client.stream("GET", "/api/v1/events") as response,
            ):
                return response.status_code == 200

        wait_for(slots_free, timeout=10, what="the dropped streams' slots", interval=0.1)


def test_a_download_cut_short_fails_the_transfer(server: RunningServer, editor: User) -> None:
    with server.client(editor.token) as client:
        created = client.put("/api/v1/files/raw/cut.bin", content=os.urandom(64 * MiB))
    assert created.status_code == 201, created.text
    watching = watcher(server, editor, "e2e-cut-download")
    head = request_head(
        "GET",
        created.json()["content_url"] + "?transfer_id=e2e-cut-download",
        [("Authorization", f"Bearer {editor.token}")],
    )
    sock = connect(server)
    try:
        sock.sendall(head)
        received = 0
        while received < 2 * MiB:
            chunk = sock.recv(256 * 1024)
            assert chunk, "the server closed the download early"
            received += len(chunk)
    finally:
        sock.close()
    failed = watching.join()[-1]
    assert failed.event == "failed"
    assert failed.data["code"] == "download_incomplete"
    assert 0 < failed.data["bytes"] < 64 * MiB
