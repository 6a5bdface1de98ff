"""tus 1.0 at /api/v1/uploads, through the API on both stacks: every status the spec names,
what is stored, and what is left (nothing) after each failure."""

from __future__ import annotations

import hashlib
import os
from email.utils import parsedate_to_datetime

import httpx
import pytest
from sqlalchemy import select

from filesvc.config import Settings
from filesvc.deps import AppContext
from filesvc.tus.models import TusUpload
from tests.conftest import Account, blob_files
from tests.tus.helpers import (
    TUS,
    UPLOADS,
    checksum,
    create,
    created,
    metadata,
    offset_of,
    patch,
)

MiB = 1024 * 1024


async def _upload_rows(context: AppContext) -> list[TusUpload]:
    async with context.db.session() as session:
        return list((await session.scalars(select(TusUpload))).all())


def _stored(settings: Settings) -> list[str]:
    return [str(p) for p in blob_files(settings)]


async def test_options_advertises_version_extensions_and_limits(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.options(UPLOADS)
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    }
    assert response.headers["tus-max-size"] == str(settings.max_upload_bytes)
    assert set(response.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}


async def test_upload_in_chunks_becomes_a_file(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    data = os.urandom(12 * MiB + 123)
    response = await create(
        client,
        editor,
        len(data),
        meta={
            "filename": "movie.mp4",
            "filetype": "video/mp4",
            "visibility": "internal",
            "project": "apollo",
        },
    )
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    assert url.startswith(f"{UPLOADS}/")
    assert response.headers["tus-resumable"] == "1.0.0"
    assert parsedate_to_datetime(response.headers["upload-expires"])

    head = await client.head(url, headers={**editor.headers, **TUS})
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"
    assert "filename" in head.headers["upload-metadata"]

    offset = 0
    for size in (5 * MiB, 5 * MiB + 7, 100):  # uneven chunks, some below S3's part size
        chunk = data[offset : offset + size]
        answer = await patch(client, editor, url, offset, chunk)
        assert answer.status_code == 204, answer.text
        offset += len(chunk)
        assert answer.headers["upload-offset"] == str(offset)
        assert await offset_of(client, editor, url) == offset
        assert "x-file-id" not in answer.headers
    last = await patch(client, editor, url, offset, data[offset:])
    assert last.status_code == 204, last.text
    assert last.headers["upload-offset"] == str(len(data))
    file_id = last.headers["x-file-id"]
    assert last.headers["x-file-location"] == f"/api/v1/files/{file_id}"

    file = (await client.get(f"/api/v1/files/{file_id}", headers=editor.headers)).json()
    assert file["name"] == "movie.mp4"
    assert file["content_type"] == "video/mp4"
    assert file["visibility"] == "internal"
    assert file["metadata"] == {"project": "apollo"}
    assert file["size"] == len(data)
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    content = await client.get(file["content_url"], headers=editor.headers)
    assert hashlib.sha256(content.content).hexdigest() == file["sha256"]

    # The temporary state is gone: no row, and only the file's blob in storage.
    assert await _upload_rows(app.state.context) == []  # type: ignore[attr-defined]
    assert len(_stored(settings)) == 1
    gone = await client.head(url, headers={**editor.headers, **TUS})
    assert gone.status_code == 404


async def test_creation_with_upload_and_deferred_length(
    client: httpx.AsyncClient, editor: Account
) -> None:
    data = os.urandom(3 * MiB)
    response = await client.post(
        UPLOADS,
        content=data[:MiB],
        headers={
            **editor.headers,
            **TUS,
            "Upload-Defer-Length": "1",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Metadata": metadata(filename="notes.txt"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(MiB)
    url = response.headers["location"]
    head = await client.head(url, headers={**editor.headers, **TUS})
    assert head.headers["upload-defer-length"] == "1"
    assert "upload-length" not in head.headers

    second = await patch(client, editor, url, MiB, data[MiB : 2 * MiB])
    assert second.status_code == 204
    last = await patch(
        client, editor, url, 2 * MiB, data[2 * MiB :], {"Upload-Length": str(len(data))}
    )
    assert last.status_code == 204, last.text
    file = (await client.get(last.headers["x-file-location"], headers=editor.headers)).json()
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    assert file["name"] == "notes.txt"
    assert file["content_type"] == "text/plain"


async def test_empty_upload_is_a_file_at_once(client: httpx.AsyncClient, editor: Account) -> None:
    response = await create(client, editor, 0, meta={"filename": "empty.bin"})
    assert response.status_code == 201, response.text
    file = (await client.get(response.headers["x-file-location"], headers=editor.headers)).json()
    assert file["size"] == 0
    assert file["sha256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_checksum_match_and_mismatch(
    client: httpx.AsyncClient, editor: Account, algorithm: str
) -> None:
    data = os.urandom(2 * MiB)
    url = await created(client, editor, len(data))
    good = data[:MiB]
    ok = await patch(client, editor, url, 0, good, {"Upload-Checksum": checksum(algorithm, good)})
    assert ok.status_code == 204, ok.text

    rest = data[MiB:]
    wrong = checksum(algorithm, rest[::-1])
    bad = await patch(client, editor, url, MiB, rest, {"Upload-Checksum": wrong})
    assert bad.status_code == 460
    assert bad.json()["code"] == "checksum_mismatch"
    assert await offset_of(client, editor, url) == MiB

    done = await patch(
        client, editor, url, MiB, rest, {"Upload-Checksum": checksum(algorithm, rest)}
    )
    assert done.status_code == 204, done.text
    file = (await client.get(done.headers["x-file-location"], headers=editor.headers)).json()
    assert file["sha256"] == hashlib.sha256(data).hexdigest()


async def test_unsupported_checksum_algorithm_is_400(
    client: httpx.AsyncClient, editor: Account
) -> None:
    url = await created(client, editor, 10)
    response = await patch(client, editor, url, 0, b"x" * 10, {"Upload-Checksum": "crc32 AAAA"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_tus_header"
    assert await offset_of(client, editor, url) == 0


async def test_wrong_offset_is_409_and_changes_nothing(
    client: httpx.AsyncClient, editor: Account
) -> None:
    url = await created(client, editor, 100)
    assert (await patch(client, editor, url, 0, b"a" * 10)).status_code == 204
    response = await patch(client, editor, url, 5, b"b" * 10)
    assert response.status_code == 409
    assert response.json()["code"] == "upload_offset_mismatch"
    assert await offset_of(client, editor, url) == 10


async def test_wrong_content_type_is_415(client: httpx.AsyncClient, editor: Account) -> None:
    url = await created(client, editor, 100)
    response = await patch(
        client, editor, url, 0, b"a" * 10, {"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 415
    assert await offset_of(client, editor, url) == 0


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_missing_or_unsupported_tus_resumable_is_412(
    client: httpx.AsyncClient, editor: Account, version: str | None
) -> None:
    headers = {**editor.headers, "Upload-Length": "10"}
    if version is not None:
        headers["Tus-Resumable"] = version
    response = await client.post(UPLOADS, headers=headers)
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0"
    url = await created(client, editor, 10)
    head = await client.head(
        url, headers={**editor.headers, **({"Tus-Resumable": version} if version else {})}
    )
    assert head.status_code == 412


async def test_chunk_past_the_length_is_413(client: httpx.AsyncClient, editor: Account) -> None:
    url = await created(client, editor, 10)
    response = await patch(client, editor, url, 0, b"a" * 11)
    assert response.status_code == 413
    assert await offset_of(client, editor, url) == 0


async def test_length_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    response = await create(client, editor, settings.max_upload_bytes + 1)
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert await _upload_rows(app.state.context) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Upload-Length": "-1"}, "invalid_tus_header"),
        ({"Upload-Length": "ten"}, "invalid_tus_header"),
        ({}, "invalid_tus_header"),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, "invalid_tus_header"),
        ({"Upload-Defer-Length": "2"}, "invalid_tus_header"),
        ({"Upload-Length": "10", "Upload-Metadata": "filename not-base64!"}, "invalid_tus_header"),
        (
            {"Upload-Length": "10", "Upload-Metadata": metadata(visibility="secret")},
            "invalid_field",
        ),
    ],
)
async def test_bad_creation_headers_are_400(
    client: httpx.AsyncClient, editor: Account, headers: dict[str, str], code: str
) -> None:
    response = await client.post(UPLOADS, headers={**editor.headers, **TUS, **headers})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


async def test_viewer_cannot_create(client: httpx.AsyncClient, viewer: Account) -> None:
    response = await create(client, viewer, 10)
    assert response.status_code == 403


async def test_only_the_uploader_and_admins_see_an_upload(
    client: httpx.AsyncClient, editor: Account, admin: Account
) -> None:
    from tests.conftest import make_account

    other = await make_account(client, admin, "other", "editor")
    url = await created(client, editor, 10)
    assert (await client.head(url, headers={**other.headers, **TUS})).status_code == 404
    assert (await patch(client, other, url, 0, b"x" * 10)).status_code == 404
    assert (await client.delete(url, headers={**other.headers, **TUS})).status_code == 404
    assert (await client.head(url, headers={**admin.headers, **TUS})).status_code == 200
    assert (await client.head(url, headers=TUS)).status_code == 401
    # Browsers may pass the token in the query, as for other content routes.
    query = await client.head(f"{url}?access_token={editor.token}", headers=TUS)
    assert query.status_code == 200


async def test_terminate_removes_row_and_bytes(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    data = os.urandom(6 * MiB)
    url = await created(client, editor, 20 * MiB)
    assert (await patch(client, editor, url, 0, data)).status_code == 204
    assert _stored(settings) != [] or settings.storage == "local"
    response = await client.delete(url, headers={**editor.headers, **TUS})
    assert response.status_code == 204
    assert await _upload_rows(app.state.context) == []  # type: ignore[attr-defined]
    assert _stored(settings) == []
    if settings.storage == "local":
        assert list((settings.resolved_storage_dir / ".tus").glob("*")) == []
    assert (await client.head(url, headers={**editor.headers, **TUS})).status_code == 404


async def test_expired_upload_is_410(
    client: httpx.AsyncClient, editor: Account, app: object
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from filesvc.db import utcnow

    url = await created(client, editor, 10)
    context: AppContext = app.state.context  # type: ignore[attr-defined]
    async with context.db.session() as session:
        await session.execute(update(TusUpload).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.head(url, headers={**editor.headers, **TUS})).status_code == 410
    assert (await patch(client, editor, url, 0, b"x" * 10)).status_code == 410


async def test_gc_removes_expired_uploads_bytes_and_rows(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from filesvc.db import utcnow
    from filesvc.tus.expiry import live_storage_keys, remove_expired_uploads

    context: AppContext = app.state.context  # type: ignore[attr-defined]
    stale = await created(client, editor, 20 * MiB)
    fresh = await created(client, editor, 20 * MiB)
    for url in (stale, fresh):
        # 6 MiB + 1 KiB: one S3 part and a tail object, or a partial file on disk.
        assert (await patch(client, editor, url, 0, os.urandom(6 * MiB + 1024))).status_code == 204
    stale_id = stale.rsplit("/", 1)[1]
    async with context.db.session() as session:
        await session.execute(
            update(TusUpload)
            .where(TusUpload.id == stale_id)
            .values(expires_at=utcnow() - timedelta(hours=2))
        )
    stored_before = _stored(settings)

    assert await remove_expired_uploads(context.db, context.storage, grace=timedelta(hours=3)) == []
    dry = await remove_expired_uploads(
        context.db, context.storage, grace=timedelta(hours=1), dry_run=True
    )
    assert [u.id for u in dry] == [stale_id]
    assert _stored(settings) == stored_before
    removed = await remove_expired_uploads(context.db, context.storage, grace=timedelta(hours=1))
    assert [u.id for u in removed] == [stale_id]

    rows = await _upload_rows(context)
    assert [row.id for row in rows] == [fresh.rsplit("/", 1)[1]]
    assert (await client.head(stale, headers={**editor.headers, **TUS})).status_code == 404
    # Only the fresh upload's bytes remain, all under its live key.
    live = await live_storage_keys(context.db)
    assert live == {rows[0].storage_key}
    (key,) = live
    if settings.storage == "local":
        partials = sorted(p.name for p in (settings.resolved_storage_dir / ".tus").iterdir())
        assert partials == [f"{key}.part"]
    else:
        assert _stored(settings)
        assert all(key in path for path in _stored(settings)), _stored(settings)
    assert (await offset_of(client, editor, fresh)) == 6 * MiB + 1024


async def test_a_lease_held_elsewhere_is_423_until_it_expires(
    client: httpx.AsyncClient, editor: Account, app: object
) -> None:
    """The lease lives in the row: another instance holding it (here: claimed directly in
    the database) refuses this one's PATCH; once it expires, the PATCH goes through."""
    from datetime import timedelta

    from sqlalchemy import update

    from filesvc.db import utcnow
    from filesvc.tus import lease

    context: AppContext = app.state.context  # type: ignore[attr-defined]
    data = os.urandom(MiB)
    url = await created(client, editor, len(data))
    upload_id = url.rsplit("/", 1)[1]
    async with context.db.session() as session:
        assert await lease.claim(session, upload_id) is not None
    async with context.db.session() as session:
        assert await lease.claim(session, upload_id) is None  # one holder at a time
    refused = await patch(client, editor, url, 0, data)
    assert refused.status_code == 423
    assert refused.json()["code"] == "upload_locked"
    assert await offset_of(client, editor, url) == 0

    async with context.db.session() as session:
        await session.execute(
            update(TusUpload).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    done = await patch(client, editor, url, 0, data)
    assert done.status_code == 204, done.text
    file = (await client.get(done.headers["x-file-location"], headers=editor.headers)).json()
    assert file["sha256"] == hashlib.sha256(data).hexdigest()


async def test_bytes_past_the_offset_after_a_crash_are_cut_back(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    """A process killed mid-chunk leaves a partial file longer than the committed offset
    (local disk) or parts no row names (S3); the next PATCH starts at the offset."""
    data = os.urandom(8 * MiB)
    url = await created(client, editor, len(data))
    assert (await patch(client, editor, url, 0, data[: 3 * MiB])).status_code == 204
    if settings.storage == "local":
        [partial] = (settings.resolved_storage_dir / ".tus").iterdir()
        with partial.open("ab") as f:
            f.write(b"junk that was never committed" * 1000)
    assert await offset_of(client, editor, url) == 3 * MiB
    done = await patch(client, editor, url, 3 * MiB, data[3 * MiB :])
    assert done.status_code == 204, done.text
    file = (await client.get(done.headers["x-file-location"], headers=editor.headers)).json()
    assert file["size"] == len(data)
    assert file["sha256"] == hashlib.sha256(data).hexdigest()


async def test_hash_is_recomputed_when_this_process_did_not_see_every_chunk(
    client: httpx.AsyncClient, editor: Account, app: object
) -> None:
    """A restart (or another worker) loses the running SHA-256: it is read back at the end."""
    from filesvc.tus.service import TusRuntime

    runtime: TusRuntime = app.state.tus  # type: ignore[attr-defined]
    data = os.urandom(7 * MiB)
    url = await created(client, editor, len(data))
    assert (await patch(client, editor, url, 0, data[: 6 * MiB])).status_code == 204
    runtime.hashes.forget(url.rsplit("/", 1)[1])
    done = await patch(client, editor, url, 6 * MiB, data[6 * MiB :])
    assert done.status_code == 204, done.text
    file = (await client.get(done.headers["x-file-location"], headers=editor.headers)).json()
    assert file["sha256"] == hashlib.sha256(data).hexdigest()


async def test_deferred_length_over_the_quota_is_413(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    settings.user_quota_bytes = 2 * MiB
    url = await created(client, editor, None)
    response = await patch(client, editor, url, 0, os.urandom(3 * MiB))
    assert response.status_code == 413
    assert await offset_of(client, editor, url) == 0
    over = await create(client, editor, 3 * MiB)
    assert over.status_code == 413
    assert over.json()["code"] == "quota_exceeded"


async def test_gc_removes_orphan_partial_files_on_local_disk(
    client: httpx.AsyncClient, editor: Account, settings: Settings, app: object
) -> None:
    from datetime import timedelta

    from filesvc.tus.expiry import remove_orphan_partials

    context: AppContext = app.state.context  # type: ignore[attr-defined]
    url = await created(client, editor, 10 * MiB)
    assert (await patch(client, editor, url, 0, os.urandom(MiB))).status_code == 204
    if settings.storage != "local":
        assert await remove_orphan_partials(context.db, context.storage) == []
        return
    tus_dir = settings.resolved_storage_dir / ".tus"
    orphan = tus_dir / "0123456789abcdef0123456789abcdef.part"
    orphan.write_bytes(b"left by a crash")
    two_hours_ago = orphan.stat().st_mtime - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))

    kept = await remove_orphan_partials(context.db, context.storage, grace=timedelta(hours=3))
    assert kept == []
    dry = await remove_orphan_partials(
        context.db, context.storage, grace=timedelta(hours=1), dry_run=True
    )
    assert dry == [orphan.name]
    assert orphan.exists()
    removed = await remove_orphan_partials(context.db, context.storage, grace=timedelta(0))
    assert removed == [orphan.name]
    assert not orphan.exists()
    # The live upload's partial file stays, however old.
    [live] = tus_dir.iterdir()
    assert await offset_of(client, editor, url) == MiB
    assert live.stat().st_size == MiB
