"""What lets an interrupted upload or download pick up where it stopped."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from filesvc.client.state import MAX_AGE_SECONDS, PartialDownload, ResumeState, UploadKey

from .conftest import ClientDirs

SERVER = "http://127.0.0.1:8000"


def test_an_upload_url_is_found_again_for_the_same_file(
    client_dirs: ClientDirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    state = ResumeState()
    state.remember_upload(UploadKey.of(SERVER, path), "http://127.0.0.1:8000/api/v1/uploads/u1")

    # Another process (the next run), reached by a relative path.
    monkeypatch.chdir(tmp_path)
    again = ResumeState().upload_url(UploadKey.of(SERVER, Path("a.bin")))
    assert again == "http://127.0.0.1:8000/api/v1/uploads/u1"
    uploads = client_dirs.state / "uploads.json"
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o600


def test_a_changed_file_or_another_server_is_a_new_upload(
    client_dirs: ClientDirs, tmp_path: Path
) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    state = ResumeState()
    state.remember_upload(UploadKey.of(SERVER, path), "http://u/1")

    assert state.upload_url(UploadKey.of("http://other:1", path)) is None
    path.write_bytes(b"y" * 101)  # new size
    assert state.upload_url(UploadKey.of(SERVER, path)) is None
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(0, 1_000_000_000))  # same size, other mtime
    assert state.upload_url(UploadKey.of(SERVER, path)) is None


def test_forgetting_an_upload_keeps_the_others(client_dirs: ClientDirs, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    state = ResumeState()
    state.remember_upload(UploadKey.of(SERVER, a), "http://u/a")
    state.remember_upload(UploadKey.of(SERVER, b), "http://u/b")
    state.forget_upload(UploadKey.of(SERVER, a))
    assert state.upload_url(UploadKey.of(SERVER, a)) is None
    assert state.upload_url(UploadKey.of(SERVER, b)) == "http://u/b"


def test_old_entries_are_dropped_on_the_next_write(client_dirs: ClientDirs, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    state = ResumeState()
    state.remember_upload(UploadKey.of(SERVER, a), "http://u/a")
    uploads = client_dirs.state / "uploads.json"
    entries = json.loads(uploads.read_text())
    for entry in entries.values():
        entry["saved_at"] = time.time() - MAX_AGE_SECONDS - 1
    uploads.write_text(json.dumps(entries))

    state.remember_upload(UploadKey.of(SERVER, b), "http://u/b")
    assert len(json.loads(uploads.read_text())) == 1
    assert state.upload_url(UploadKey.of(SERVER, a)) is None


def test_a_partial_download_remembers_its_etag(client_dirs: ClientDirs, tmp_path: Path) -> None:
    partial = tmp_path / "photo.jpg.part"
    state = ResumeState()
    assert state.partial_download(partial) is None
    state.remember_download(partial, PartialDownload(SERVER, "id-1", '"abc"'))
    assert ResumeState().partial_download(partial) == PartialDownload(SERVER, "id-1", '"abc"')
    state.forget_download(partial)
    assert state.partial_download(partial) is None
