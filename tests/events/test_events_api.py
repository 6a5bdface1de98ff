"""GET /events: file changes as the caller may see them, replayed after a reconnect."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from filesvc.deps import AppContext
from filesvc.events.feed import CHANNEL, FileEventMessage
from tests.conftest import Account
from tests.files.helpers import uploaded
from tests.transfers.sse import Event, events_of
from tests.transfers.waiting import subscribers, until_subscribed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Each stream ends after a second, as a browser's would after the real lifetime.
    return settings.model_copy(update={"max_stream_seconds": 1, "events_replay_window": 5})


async def read_events(
    client: httpx.AsyncClient, account: Account, last_event_id: int | None = None
) -> list[Event]:
    headers = dict(account.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    response = await client.get("/api/v1/events", headers=headers)
    assert response.status_code == 200, response.text
    return [e for e in events_of(response.text) if e.event != "retry"]


async def test_live_events_of_readable_files(
    app: FastAPI, client: httpx.AsyncClient, editor: Account, viewer: Account, admin: Account
) -> None:
    before = subscribers(app)
    watchers = [asyncio.create_task(read_events(client, a)) for a in (editor, viewer, admin)]
    await until_subscribed(app, before + 3)  # all three listening: none can miss an event
    private = await uploaded(client, editor, filename="private.txt")
    shared = await uploaded(
        client, editor, filename="shared.txt", fields={"visibility": "internal"}
    )
    renamed = await client.patch(
        f"/api/v1/files/{shared['id']}", json={"name": "renamed.txt"}, headers=editor.headers
    )
    assert (
        await client.delete(f"/api/v1/files/{private['id']}", headers=editor.headers)
    ).is_success
    by_editor, by_viewer, by_admin = await asyncio.gather(*watchers)

    expected = [
        ("file.created", private),
        ("file.created", shared),
        ("file.updated", renamed.json()),
        ("file.deleted", {"id": private["id"]}),
    ]
    assert [(e.event, e.data) for e in by_editor] == expected
    assert [(e.event, e.data) for e in by_admin] == expected
    assert [(e.event, e.data) for e in by_viewer] == [expected[1], expected[2]]
    ids = [int(e.id or 0) for e in by_editor]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_a_reconnect_replays_what_was_missed(
    client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    first = await uploaded(client, editor, filename="1.txt", fields={"visibility": "internal"})
    seen = await read_events(client, editor, last_event_id=0)
    assert [e.data["id"] for e in seen] == [first["id"]]
    last_id = int(seen[-1].id or 0)

    missed = [
        await uploaded(client, editor, filename=f"{n}.txt", fields={"visibility": "internal"})
        for n in range(2, 5)
    ]
    replayed = await read_events(client, editor, last_event_id=last_id)
    assert [e.data["id"] for e in replayed] == [f["id"] for f in missed]
    assert [e.data["id"] for e in await read_events(client, viewer, last_id)] == [
        f["id"] for f in missed
    ]


async def test_the_replay_window_is_bounded(client: httpx.AsyncClient, editor: Account) -> None:
    files = [await uploaded(client, editor, filename=f"{n}.txt") for n in range(8)]
    replayed = await read_events(client, editor, last_event_id=0)
    # events_replay_window=5: the oldest are gone, the newest five remain.
    assert [e.data["id"] for e in replayed] == [f["id"] for f in files[-5:]]


async def test_uploads_committed_together_get_their_own_events_in_order(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    context: AppContext = app.state.context
    names = [f"together-{n}.txt" for n in range(12)]
    async with context.broker.subscribe(CHANNEL) as subscription:
        responses = await asyncio.gather(
            *(
                client.put(
                    f"/api/v1/files/raw/{name}", content=name.encode(), headers=editor.headers
                )
                for name in names
            )
        )
        published = [await subscription.get(10) for _ in names]
    assert [r.status_code for r in responses] == [201] * len(names)
    assert context.file_inserts.groups_committed >= 1  # some shared a transaction
    uploads = {r.json()["id"]: r.json() for r in responses}
    for file_id, body in uploads.items():  # the reply is the committed row
        stored = await client.get(f"/api/v1/files/{file_id}", headers=editor.headers)
        assert stored.json() == body

    live = [FileEventMessage.decode(message or "") for message in published]
    # One event per file, each with the file as its reply showed it, ids rising.
    data = [json.loads(e.data_json) for e in live]
    assert sorted(d["id"] for d in data) == sorted(uploads)
    assert all(d == uploads[d["id"]] for d in data)
    ids = [e.id for e in live]
    assert ids == sorted(set(ids))
    # The ids published are those of the rows: a replay (the newest five) matches them.
    replayed = await read_events(client, editor, last_event_id=0)
    assert [(int(e.id or 0), e.data) for e in replayed] == [
        (e.id, d) for e, d in zip(live[-5:], data[-5:], strict=True)
    ]


async def test_events_need_a_token(client: httpx.AsyncClient, editor: Account) -> None:
    assert (await client.get("/api/v1/events")).status_code == 401
    response = await client.get(f"/api/v1/events?access_token={editor.token}")
    assert response.status_code == 200
