"""A row that fails to commit takes its blob with it (a real database trigger fails it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from filesvc.config import Settings
from filesvc.deps import AppContext
from tests.conftest import Account, blob_files
from tests.files.helpers import file_ids

REJECTED = "rejected-by-trigger.txt"

SQLITE_TRIGGER = [
    f"""CREATE TRIGGER reject_files BEFORE INSERT ON files WHEN NEW.name = '{REJECTED}'
    BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END""",
]
POSTGRES_TRIGGER = [
    f"""CREATE OR REPLACE FUNCTION reject_files() RETURNS trigger AS $$
    BEGIN IF NEW.name = '{REJECTED}' THEN RAISE EXCEPTION 'rejected by test trigger'; END IF;
    RETURN NEW; END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER reject_files BEFORE INSERT ON files"
    " FOR EACH ROW EXECUTE FUNCTION reject_files()",
]
DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS reject_files"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS reject_files ON files",
        "DROP FUNCTION IF EXISTS reject_files()",
    ],
}


@pytest.fixture
async def failing_inserts(app: FastAPI) -> AsyncIterator[None]:
    context: AppContext = app.state.context
    dialect = context.db.engine.dialect.name
    async with context.db.engine.begin() as connection:
        for statement in SQLITE_TRIGGER if dialect == "sqlite" else POSTGRES_TRIGGER:
            await connection.execute(text(statement))
    yield
    async with context.db.engine.begin() as connection:
        for statement in DROP[dialect]:
            await connection.execute(text(statement))


async def test_failed_commit_removes_the_blob(
    app: FastAPI, editor: Account, settings: Settings, failing_inserts: None
) -> None:
    # As a server would: the error becomes a 500 reply instead of reaching the client code.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await _upload_rejected_then_accepted(client, editor, settings)


async def _upload_rejected_then_accepted(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    multipart = await client.post(
        "/api/v1/files", files={"file": (REJECTED, b"bytes", "text/plain")}, headers=editor.headers
    )
    raw = await client.put(
        f"/api/v1/files/raw/{REJECTED}", content=b"bytes", headers=editor.headers
    )
    for response in (multipart, raw):
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        assert "trigger" not in response.text  # database errors are not echoed
    assert await file_ids(client, editor) == []
    assert blob_files(settings) == []

    accepted = await client.post(
        "/api/v1/files",
        files={"file": ("fine.txt", b"bytes", "text/plain")},
        headers=editor.headers,
    )
    assert accepted.status_code == 201


async def test_concurrent_uploads_commit_or_fail_each_on_their_own(
    app: FastAPI, editor: Account, settings: Settings, failing_inserts: None
) -> None:
    # Uploads finishing together share a transaction (group_commit.py); the one row the
    # database refuses must fail alone, with its blob, and every other upload be kept.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    names = [f"together-{i}.txt" for i in range(12)]
    names.insert(5, REJECTED)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = await asyncio.gather(
            *(
                client.put(
                    f"/api/v1/files/raw/{name}",
                    content=name.encode() * 1000,
                    headers=editor.headers,
                )
                for name in names
            )
        )
        statuses = {
            name: response.status_code for name, response in zip(names, responses, strict=True)
        }
        assert statuses == {name: 500 if name == REJECTED else 201 for name in names}
        kept = {
            r.json()["id"]: n for n, r in zip(names, responses, strict=True) if r.status_code == 201
        }
        assert sorted(await file_ids(client, editor)) == sorted(kept)
        for file_id, name in kept.items():
            content = await client.get(f"/api/v1/files/{file_id}/content", headers=editor.headers)
            assert content.content == name.encode() * 1000
    assert len(blob_files(settings)) == len(kept)
