"""Two `filesvc serve` processes sharing PostgreSQL, Redis and the blob directory: an
upload through one is watched, live, through the other."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import new_postgres_database

from .server import MiB, RunningServer, User, create_user, login, run_server
from .watch import Watcher

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with new_postgres_database("filesvc_e2e") as url:
        yield url


@pytest.fixture(scope="module")
def instances(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str
) -> Iterator[tuple[RunningServer, RunningServer]]:
    shared = tmp_path_factory.mktemp("shared")
    env = {
        "FILESVC_DATABASE_URL": database_url,
        "FILESVC_REDIS_URL": redis_url,
        "FILESVC_STORAGE_DIR": str(shared / "blobs"),
        "FILESVC_SECRET_KEY": secrets.token_urlsafe(48),
        "FILESVC_ADMIN_PASSWORD": secrets.token_urlsafe(24),
    }
    with (
        run_server(tmp_path_factory.mktemp("one"), env) as one,
        run_server(tmp_path_factory.mktemp("two"), env) as two,
    ):
        yield one, two


def test_an_upload_through_one_is_watched_through_the_other(
    instances: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    one, two = instances
    assert one.port != two.port
    editor: User = create_user(one, "editor")
    # One secret key: a token from one instance works on the other.
    assert login(two.base_url, editor.username, editor.password)
    transfer_id = f"across-{uuid.uuid4().hex}"
    progress = Watcher(two.url(f"/api/v1/transfers/{transfer_id}/events"), editor.token).start()
    files = Watcher(two.url("/api/v1/events"), editor.token, stop_after=("file.created",)).start()

    data = os.urandom(64 * MiB)
    with one.client(editor.token, timeout=60) as client:
        response = client.put(
            "/api/v1/files/raw/across.bin", content=data, headers={"X-Transfer-Id": transfer_id}
        )
    assert response.status_code == 201, response.text

    events = progress.join()
    assert any(e.event == "progress" and e.data["state"] == "receiving" for e in events)
    assert events[-1].event == "complete"
    assert events[-1].data["file"] == response.json()
    [created] = files.join()
    assert created.event == "file.created"
    assert created.data == response.json()
    # Who owns the transfer is known on the other instance too: anyone else gets 404.
    other = create_user(two, "editor")
    with two.client(other.token) as client:
        refused = client.get(f"/api/v1/transfers/{transfer_id}/events")
    assert refused.status_code == 404
    # The other instance serves the file too: one database, one blob directory.
    with two.client(editor.token) as client:
        assert client.get(f"/api/v1/files/{created.data['id']}").json() == response.json()


def test_a_stream_resumed_on_the_other_instance_replays_what_it_missed(
    instances: tuple[RunningServer, RunningServer],
) -> None:
    """EventSource reconnects with Last-Event-ID, maybe to another worker behind the proxy:
    the feed is in the shared database, so what happened while it was away is replayed."""
    one, two = instances
    editor: User = create_user(one, "editor")
    first = Watcher(one.url("/api/v1/events"), editor.token, stop_after=("file.created",))
    first.start()
    with one.client(editor.token) as client:
        seen = client.put("/api/v1/files/raw/seen.txt", content=b"seen\n")
    assert seen.status_code == 201, seen.text
    [created] = first.join()
    assert created.event == "file.created"
    assert created.data["id"] == seen.json()["id"]
    assert created.id is not None

    # Gone (the stream above ended); meanwhile a file is made through the first instance.
    with one.client(editor.token) as client:
        missed = client.put("/api/v1/files/raw/missed.txt", content=b"missed\n")
    assert missed.status_code == 201, missed.text

    resumed = Watcher(
        two.url("/api/v1/events"),
        editor.token,
        stop_after=("file.created",),
        headers={"Last-Event-ID": created.id},
    ).start()
    [replayed] = resumed.join()
    assert resumed.status == 200
    assert replayed.event == "file.created"
    assert replayed.data == missed.json()
    assert int(replayed.id or 0) > int(created.id)
