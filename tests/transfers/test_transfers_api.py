"""Transfers over the API: reserving, tracking every upload and download path, watching."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from tests.conftest import ADMIN_PASSWORD, Account, client_for, login, make_account, running_app
from tests.files.helpers import sha256, upload, uploaded
from tests.transfers.sse import Event, events_of
from tests.transfers.waiting import subscribers, until, until_subscribed

MiB = 1024 * 1024
DATA = b"0123456789abcdef" * 65536  # 1 MiB


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "progress_interval_seconds": 0.0,  # every chunk: small bodies still show progress
            "max_stream_seconds": 2,
            "max_upload_bytes": 2 * MiB,
            "max_streams_per_user": 2,
        }
    )


async def watch(client: httpx.AsyncClient, account: Account, transfer_id: str) -> httpx.Response:
    return await client.get(f"/api/v1/transfers/{transfer_id}/events", headers=account.headers)


def final(events: list[Event]) -> Event:
    assert events[-1].event in ("complete", "failed"), events
    return events[-1]


async def test_reserve_a_transfer(client: httpx.AsyncClient, editor: Account) -> None:
    response = await client.post("/api/v1/transfers", headers=editor.headers)
    assert response.status_code == 201
    body = response.json()
    assert body["events_url"] == f"/api/v1/transfers/{body['id']}/events"
    assert (await client.post("/api/v1/transfers")).status_code == 401


async def test_watch_an_upload_while_it_runs(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    before = subscribers(app)
    watcher = asyncio.create_task(watch(client, editor, "up-1"))
    await until_subscribed(app, before + 1)  # subscribed, waiting (pending)
    response = await upload(client, editor, DATA, headers={"X-Transfer-Id": "up-1"})
    assert response.status_code == 201
    assert response.headers["x-transfer-id"] == "up-1"
    stream = await watcher
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    events = events_of(stream.text)
    assert events[0].retry == 2000
    assert events[1].data["state"] == "pending"
    progress = [e for e in events if e.event == "progress" and e.data["state"] == "receiving"]
    # In process, 1 MiB may arrive within one progress interval, and a watcher behind skips
    # to the newest progress: at least the last one comes (e2e tests see many, mid-upload).
    assert progress
    assert progress[-1].data["bytes"] == progress[-1].data["total"]
    assert progress[-1].data["percent"] == 100.0
    # Each one says how fast it goes and how long is left (no estimate before the first
    # byte), and nothing is left once every byte is in.
    for event in progress:
        assert event.data.keys() >= {"bytes", "total", "percent", "rate", "eta", "state"}
        if event.data["bytes"] == 0:
            assert event.data["rate"] == 0, event
            assert event.data["eta"] is None, event
        else:
            assert event.data["rate"] > 0, event
            assert event.data["eta"] >= 0, event
    assert progress[-1].data["eta"] == 0
    ids = [int(e.id) for e in events if e.id is not None]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    done = final(events)
    assert done.event == "complete"
    assert done.data["file"] == response.json()
    assert done.data["file"]["sha256"] == sha256(DATA)


async def test_a_late_watcher_gets_the_end_at_once(
    client: httpx.AsyncClient, editor: Account, admin: Account, viewer: Account
) -> None:
    reserved = (await client.post("/api/v1/transfers", headers=editor.headers)).json()
    response = await client.put(
        f"/api/v1/files/raw/a.bin?transfer_id={reserved['id']}",
        content=DATA,
        headers=editor.headers,
    )
    assert response.status_code == 201
    for account in (editor, admin):
        events = events_of((await watch(client, account, reserved["id"])).text)
        assert [e.event for e in events] == ["retry", "complete"]
        assert events[-1].data["file"]["id"] == response.json()["id"]
    # Anyone else: as if it did not exist.
    other = await make_account(client, admin, "other", "editor")
    for account in (viewer, other):
        refused = await watch(client, account, reserved["id"])
        assert refused.status_code == 404
        assert refused.json()["code"] == "transfer_not_found"
    assert (await client.get(f"/api/v1/transfers/{reserved['id']}/events")).status_code == 401


async def test_access_token_in_the_query(client: httpx.AsyncClient, editor: Account) -> None:
    await uploaded(client, editor, headers={"X-Transfer-Id": "q-1"})
    response = await client.get(f"/api/v1/transfers/q-1/events?access_token={editor.token}")
    assert final(events_of(response.text)).event == "complete"


@pytest.mark.parametrize(
    ("how", "code", "status"),
    [
        ("too_large", "upload_too_large", 413),
        ("checksum", "checksum_mismatch", 400),
    ],
)
async def test_rejected_uploads_fail(
    client: httpx.AsyncClient, editor: Account, how: str, code: str, status: int
) -> None:
    data = DATA * 3 if how == "too_large" else DATA
    headers = {"X-Transfer-Id": f"bad-{how}"}
    if how == "checksum":
        headers["X-Checksum-SHA256"] = hashlib.sha256(b"other").hexdigest()
    response = await upload(client, editor, data, headers=headers)
    assert response.status_code == status
    assert response.headers["x-transfer-id"] == f"bad-{how}"
    failed = final(events_of((await watch(client, editor, f"bad-{how}")).text))
    assert failed.event == "failed"
    assert failed.data["code"] == code == response.json()["code"]
    assert failed.data["detail"] == response.json()["detail"]


async def test_a_chunked_body_over_the_limit_fails_mid_body(
    client: httpx.AsyncClient, editor: Account
) -> None:
    """No Content-Length to refuse up front: the limit is found while the bytes arrive."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):  # 8 MiB, well over the 2 MiB limit
            sent.append(len(DATA))
            yield DATA

    response = await client.put(
        "/api/v1/files/raw/chunked.bin?transfer_id=chunked-1",
        content=chunks(),
        headers=editor.headers,
    )
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    events = events_of((await watch(client, editor, "chunked-1")).text)
    failed = final(events)
    assert failed.event == "failed"
    assert failed.data["code"] == "upload_too_large" == response.json()["code"]
    assert failed.data["total"] is None
    # Refused at the chunk that crossed the limit, the rest never read (a late watcher sees
    # the end only).
    assert failed.data["bytes"] == 3 * MiB == sum(sent)
    assert (await client.get("/api/v1/files", headers=editor.headers)).json()["items"] == []


async def test_batch_and_replace_are_tracked(client: httpx.AsyncClient, editor: Account) -> None:
    batch = await client.post(
        "/api/v1/files/batch",
        files=[("file", ("a.txt", b"a", "text/plain")), ("file", ("b.txt", b"b", "text/plain"))],
        headers={**editor.headers, "X-Transfer-Id": "batch-1"},
    )
    assert batch.status_code == 201
    done = final(events_of((await watch(client, editor, "batch-1")).text))
    assert done.data["files"] == batch.json()["items"]

    file_id = batch.json()["items"][0]["id"]
    replaced = await client.put(
        f"/api/v1/files/{file_id}/content?transfer_id=replace-1",
        content=DATA,
        headers=editor.headers,
    )
    assert replaced.status_code == 200
    done = final(events_of((await watch(client, editor, "replace-1")).text))
    assert done.data["file"]["sha256"] == sha256(DATA)


async def test_a_download_is_tracked(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor, data=DATA)
    response = await client.get(
        f"/api/v1/files/{file['id']}/content?transfer_id=down-1", headers=editor.headers
    )
    assert response.status_code == 200
    assert response.headers["x-transfer-id"] == "down-1"
    events = events_of((await watch(client, editor, "down-1")).text)
    done = final(events)
    assert done.event == "complete"
    assert done.data["direction"] == "download"
    assert done.data["bytes"] == done.data["total"] == len(DATA)


async def test_share_link_and_archive_downloads_are_tracked(
    client: httpx.AsyncClient, editor: Account, admin: Account, viewer: Account
) -> None:
    file = await uploaded(client, editor, data=DATA)
    link = await client.post(
        f"/api/v1/files/{file['id']}/links", json={"expires_in": 600}, headers=editor.headers
    )
    assert link.status_code == 201, link.text
    url = link.json()["url"]

    # Anonymous, through the link: nobody owns the transfer, so only admins may watch it.
    shared = await client.get(f"{url}?transfer_id=shared-anon")
    assert shared.status_code == 200
    assert shared.headers["x-transfer-id"] == "shared-anon"
    done = final(events_of((await watch(client, admin, "shared-anon")).text))
    assert done.event == "complete"
    assert done.data["direction"] == "download"
    assert done.data["bytes"] == done.data["total"] == len(DATA)
    for account in (editor, viewer):
        assert (await watch(client, account, "shared-anon")).status_code == 404

    # Through the link with a token: the caller owns it.
    mine = await client.get(f"{url}?transfer_id=shared-mine", headers=editor.headers)
    assert mine.status_code == 200
    done = final(events_of((await watch(client, editor, "shared-mine")).text))
    assert done.event == "complete"
    assert done.data["bytes"] == len(DATA)
    assert (await watch(client, viewer, "shared-mine")).status_code == 404

    # An archive of two files, watched by its owner and an admin.
    other = await uploaded(client, editor, data=b"a second file\n", filename="second.txt")
    archive = await client.get(
        "/api/v1/archive",
        params={"id": [file["id"], other["id"]], "transfer_id": "archive-1"},
        headers=editor.headers,
    )
    assert archive.status_code == 200
    assert archive.headers["x-transfer-id"] == "archive-1"
    for account in (editor, admin):
        done = final(events_of((await watch(client, account, "archive-1")).text))
        assert done.event == "complete"
        assert done.data["direction"] == "download"
        assert done.data["bytes"] == done.data["total"] == len(archive.content)
    assert (await watch(client, viewer, "archive-1")).status_code == 404


async def test_transfer_ids(client: httpx.AsyncClient, editor: Account, admin: Account) -> None:
    bad = await upload(client, editor, headers={"X-Transfer-Id": "no spaces"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_transfer_id"
    assert (await watch(client, editor, "x" * 65)).status_code == 400
    await uploaded(client, editor, headers={"X-Transfer-Id": "once"})
    # Used already, or someone else's: never mixed into another transfer.
    again = await upload(client, editor, headers={"X-Transfer-Id": "once"})
    assert again.status_code == 409
    assert again.json()["code"] == "transfer_id_taken"
    theirs = await upload(client, admin, headers={"X-Transfer-Id": "once"})
    assert theirs.status_code == 409


async def test_open_streams_are_capped(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    waiting = [asyncio.create_task(watch(client, editor, f"cap-{n}")) for n in range(2)]
    streams = app.state.context.streams
    await until(lambda: streams.open_streams(editor.id) == 2, what="2 open streams")
    refused = await watch(client, editor, "cap-3")
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_streams"
    # The lifetime ends them (the browser would reconnect); their slots are free again.
    for response in await asyncio.gather(*waiting):
        assert response.status_code == 200
    await uploaded(client, editor, headers={"X-Transfer-Id": "cap-3"})
    assert (await watch(client, editor, "cap-3")).status_code == 200


async def test_reconnect_skips_what_was_seen(client: httpx.AsyncClient, editor: Account) -> None:
    await uploaded(client, editor, data=DATA, headers={"X-Transfer-Id": "again-1"})
    first = events_of((await watch(client, editor, "again-1")).text)
    seen = first[-1].id
    assert seen is not None
    response = await client.get(
        "/api/v1/transfers/again-1/events", headers={**editor.headers, "Last-Event-ID": seen}
    )
    # 204: the one answer that stops an EventSource from reconnecting forever.
    assert response.status_code == 204


async def test_two_apps_share_transfers_and_events_through_redis(
    settings: Settings, redis_url: str, cheap_password_hashing: None
) -> None:
    """Two instances on one database and one Redis: upload through one, watch the other."""
    shared = settings.model_copy(update={"redis_url": redis_url, "max_stream_seconds": 3})
    transfer_id = f"across-{uuid.uuid4().hex}"  # Redis outlives the test's database
    async with (
        running_app(shared) as one,
        running_app(shared) as two,
        client_for(one) as first,
        client_for(two) as second,
    ):
        admin = await login(first, "admin", ADMIN_PASSWORD)
        headers = {"Authorization": f"Bearer {admin}"}
        assert (await second.get("/readyz")).status_code == 200
        before = subscribers(two)
        transfer = asyncio.create_task(
            second.get(f"/api/v1/transfers/{transfer_id}/events", headers=headers)
        )
        files = asyncio.create_task(second.get("/api/v1/events", headers=headers))
        await until_subscribed(two, before + 2)  # the transfer's stream and /events
        response = await first.post(
            "/api/v1/files",
            files={"file": ("a.bin", DATA, "application/octet-stream")},
            headers={**headers, "X-Transfer-Id": transfer_id},
        )
        assert response.status_code == 201
        events = events_of((await transfer).text)
        assert any(e.data["state"] == "receiving" for e in events if e.event == "progress")
        assert final(events).data["file"] == response.json()
        created = [e for e in events_of((await files).text) if e.event == "file.created"]
        assert [e.data for e in created] == [response.json()]


async def test_an_invalid_request_fails_its_transfer(
    client: httpx.AsyncClient, editor: Account
) -> None:
    bad = await client.put(
        "/api/v1/files/raw/a.txt?visibility=bogus&transfer_id=invalid-1",
        content=b"x",
        headers=editor.headers,
    )
    assert bad.status_code == 422
    failed = final(events_of((await watch(client, editor, "invalid-1")).text))
    assert failed.event == "failed"
    assert failed.data["code"] == "validation_error" == bad.json()["code"]
