"""Tokens stay as strict as ever with the user cache (auth/cache.py): a disabled or deleted
user, or a changed password, locks tokens out at once on the instance that made the change,
within a second on another (at once with Redis), and a change made behind the app's back
(the CLI, SQL) within the cache's TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from filesvc.auth.cache import TTL_SECONDS
from filesvc.config import Settings
from filesvc.db import Database
from filesvc.deps import AppContext
from filesvc.users.models import User
from tests.conftest import ADMIN_PASSWORD, Account, client_for, login, make_account, running_app
from tests.files.helpers import uploaded

ME = "/api/v1/users/me"


async def status_of(client: httpx.AsyncClient, account: Account) -> int:
    return (await client.get(ME, headers=account.headers)).status_code


async def seconds_until_refused(
    client: httpx.AsyncClient, account: Account, within: float
) -> float:
    """Poll until the token is refused; how long that took (fails after `within`)."""
    started = time.monotonic()
    while (await status_of(client, account)) != 401:
        assert time.monotonic() - started < within, f"token still accepted after {within} s"
        # A request answered from the caches never waits on I/O: in-process, without this,
        # the loop would never run the tasks that deliver the change.
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def admin_on(client: httpx.AsyncClient) -> Account:
    token = await login(client, "admin", ADMIN_PASSWORD)
    me = (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).json()
    return Account(me["id"], "admin", ADMIN_PASSWORD, token)


@pytest.mark.parametrize(
    "change",
    [{"disabled": True}, {"password": "a-brand-new-password"}, "delete"],
    ids=["disable", "password", "delete"],
)
async def test_every_lockout_is_immediate_with_a_warm_cache(
    client: httpx.AsyncClient, admin: Account, viewer: Account, change: Any
) -> None:
    # The viewer's row is cached by these requests (the content route as well as /me).
    assert await status_of(client, viewer) == 200
    stored = await uploaded(client, admin, fields={"visibility": "internal"})
    assert (await client.get(stored["content_url"], headers=viewer.headers)).status_code == 200
    if change == "delete":
        done = await client.delete(f"/api/v1/users/{viewer.id}", headers=admin.headers)
    else:
        done = await client.patch(f"/api/v1/users/{viewer.id}", json=change, headers=admin.headers)
    assert done.status_code in (200, 204)
    assert await status_of(client, viewer) == 401
    assert (await client.get(stored["content_url"], headers=viewer.headers)).status_code == 401


async def test_role_change_is_seen_at_once(
    client: httpx.AsyncClient, admin: Account, viewer: Account
) -> None:
    assert (await client.get(ME, headers=viewer.headers)).json()["role"] == "viewer"
    done = await client.patch(
        f"/api/v1/users/{viewer.id}", json={"role": "editor"}, headers=admin.headers
    )
    assert done.status_code == 200
    assert (await client.get(ME, headers=viewer.headers)).json()["role"] == "editor"


@pytest.fixture
async def two_instances(
    settings: Settings, redis_url: str, cheap_password_hashing: None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    shared = settings.model_copy(update={"redis_url": redis_url})
    async with (
        running_app(shared) as one,
        running_app(shared) as two,
        client_for(one) as first,
        client_for(two) as second,
    ):
        yield first, second


async def test_other_instance_locks_out_within_a_second_with_redis(
    two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_instances
    admin = await admin_on(first)
    editor = await make_account(first, admin, "editor", "editor")
    assert await status_of(second, editor) == 200  # cached on the second instance
    done = await first.patch(
        f"/api/v1/users/{editor.id}", json={"disabled": True}, headers=admin.headers
    )
    assert done.status_code == 200
    # Well inside the TTL (the entry was loaded just now): the broker's message did it.
    await seconds_until_refused(second, editor, within=TTL_SECONDS / 2)


async def test_change_behind_the_apps_back_locks_out_within_the_ttl(
    client: httpx.AsyncClient, viewer: Account, settings: Settings
) -> None:
    """As `filesvc users disable` does: another process, no broker to tell anyone."""
    assert await status_of(client, viewer) == 200
    outside = Database(settings.resolved_database_url)
    try:
        async with outside.session() as session:
            await session.execute(update(User).where(User.id == viewer.id).values(disabled=True))
    finally:
        await outside.dispose()
    # The entry may have been loaded just before the change: one TTL, plus the time it
    # takes to answer the poll that sees it.
    await seconds_until_refused(client, viewer, within=TTL_SECONDS + 0.5)


async def test_a_newer_token_is_not_refused_by_an_older_entry(
    settings: Settings, cheap_password_hashing: None
) -> None:
    """Two instances without Redis: the password changes on one; the new token works on the
    other at once although its cache still holds the old version (refusals are rechecked)."""
    async with (
        running_app(settings) as one,
        running_app(settings) as two,
        client_for(one) as first,
        client_for(two) as second,
    ):
        admin = await admin_on(first)
        editor = await make_account(first, admin, "editor", "editor")
        assert await status_of(second, editor) == 200
        done = await first.patch(
            f"/api/v1/users/{editor.id}", json={"password": "changed-pw-1"}, headers=admin.headers
        )
        assert done.status_code == 200
        fresh = Account(editor.id, "editor", "", await login(first, "editor", "changed-pw-1"))
        assert await status_of(second, fresh) == 200


async def test_a_load_overtaken_by_a_change_is_not_kept(
    app: FastAPI, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    context: AppContext = app.state.context
    reads = context.db.point_reads
    read_row = reads.get

    # The change lands while the row is being read (after the query, before its result).
    async def changed_meanwhile(model: type[User], pk: object) -> User | None:
        row = await read_row(model, pk)
        context.users.invalidate(admin.id)
        return row

    monkeypatch.setattr(reads, "get", changed_meanwhile)
    loaded = await context.users.load(admin.id)
    monkeypatch.undo()
    assert loaded is not None
    assert loaded.id == admin.id
    assert context.users.get(admin.id) is None
    await context.users.load(admin.id)
    assert context.users.get(admin.id) is not None
