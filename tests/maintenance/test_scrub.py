"""`filesvc scrub` on both stacks: every blob read back and hashed; a changed, shortened
or missing blob is reported by file and the command exits 1; a sound store exits 0."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from tests.conftest import Account
from tests.files.helpers import sha256, uploaded
from tests.maintenance.helpers import context, replace_blob, run_filesvc, storage_key


async def test_scrub_reports_every_damaged_blob(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sound = await uploaded(client, admin, data=b"sound\n" * 1000)
    flipped = await uploaded(client, admin, data=b"flipped\n" * 1000)
    short = await uploaded(client, admin, data=b"short\n" * 1000)
    lost = await uploaded(client, admin, data=b"lost\n" * 1000)

    status, lines = await run_filesvc(settings, capsys, "scrub")
    assert status == 0, lines
    assert lines == ["scrub: checked 4 file(s), 25000 bytes; 0 problem(s)"]

    damaged = b"flipped\n" * 999 + b"FLIPPED\n"  # same size, other bytes
    await replace_blob(app, await storage_key(app, flipped["id"]), damaged)
    await replace_blob(app, await storage_key(app, short["id"]), b"short\n" * 999)
    await context(app).storage.delete(await storage_key(app, lost["id"]))

    status, lines = await run_filesvc(settings, capsys, "scrub")
    assert status == 1, lines
    assert f"mismatch blob of file {flipped['id']} (8000 bytes): sha256 {sha256(damaged)}" in lines
    assert f"mismatch blob of file {short['id']} (6000 bytes): 5994 bytes stored" in lines
    assert any(line.startswith(f"missing blob of file {lost['id']} (5000 bytes)") for line in lines)
    assert not any(sound["id"] in line for line in lines)
    assert lines[-1] == "scrub: checked 4 file(s), 6000 bytes; 3 problem(s)"


async def test_scrub_a_sample(
    client: httpx.AsyncClient,
    admin: Account,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(5):
        await uploaded(client, admin, data=f"file {n}\n".encode())

    status, lines = await run_filesvc(settings, capsys, "scrub", "--sample", "2")
    assert status == 0, lines
    assert re.fullmatch(r"scrub: checked 2 file\(s\), 14 bytes; 0 problem\(s\)", lines[-1])
