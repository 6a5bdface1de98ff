"""The token store: private files, one token per server, and which server and token a
command uses."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from filesvc.client.config import (
    DEFAULT_SERVER,
    Credentials,
    CredentialStore,
    normalize_server,
    resolve_target,
)
from filesvc.client.errors import UsageError

from .conftest import ClientDirs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def later(seconds: float = 3600) -> float:
    return time.time() + seconds


def test_tokens_are_kept_in_a_private_file_in_the_config_dir(client_dirs: ClientDirs) -> None:
    store = CredentialStore()
    store.save("http://files.example:8000", Credentials("tok-1", "erin", later()))

    assert store.path == client_dirs.config / "credentials.json"
    assert mode(store.path) == 0o600
    assert mode(client_dirs.config) == 0o700
    assert not [p for p in client_dirs.config.iterdir() if p.name.startswith(".credentials")]
    saved = json.loads(store.path.read_text())
    assert saved["servers"]["http://files.example:8000"]["token"] == "tok-1"
    assert saved["default_server"] == "http://files.example:8000"


def test_a_config_dir_made_by_someone_else_becomes_private(client_dirs: ClientDirs) -> None:
    client_dirs.config.mkdir(parents=True, mode=0o755)
    client_dirs.config.chmod(0o755)
    CredentialStore().save(DEFAULT_SERVER, Credentials("t", "u", later()))
    assert mode(client_dirs.config) == 0o700


def test_one_token_per_server_and_the_last_login_is_the_default(client_dirs: ClientDirs) -> None:
    store = CredentialStore()
    store.save("http://a:1", Credentials("token-a", "ann", later()))
    store.save("http://b:2", Credentials("token-b", "bob", later()))

    assert resolve_target(None, None).server == "http://b:2"
    assert resolve_target(None, None).token == "token-b"
    assert resolve_target("http://A:1/", None).token == "token-a"
    assert resolve_target("http://c:3", None).token is None


def test_flags_then_environment_then_stored(
    client_dirs: ClientDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CredentialStore()
    store.save("http://a:1", Credentials("stored", "ann", later()))
    monkeypatch.setenv("FILESVC_SERVER", "http://a:1")
    assert resolve_target(None, None).token == "stored"
    monkeypatch.setenv("FILESVC_TOKEN", "from-env")
    assert resolve_target(None, None).token == "from-env"
    assert resolve_target(None, "from-flag").token == "from-flag"
    assert resolve_target("http://b:2", None).server == "http://b:2"


def test_without_anything_the_local_server_and_no_token(client_dirs: ClientDirs) -> None:
    target = resolve_target(None, None)
    assert target.server == DEFAULT_SERVER
    assert target.token is None
    assert not client_dirs.config.exists()  # reading creates nothing


def test_an_expired_token_is_not_used(client_dirs: ClientDirs) -> None:
    CredentialStore().save(DEFAULT_SERVER, Credentials("old", "erin", later(-1)))
    assert resolve_target(None, None).token is None


def test_a_damaged_file_reads_as_empty_and_is_replaced(client_dirs: ClientDirs) -> None:
    store = CredentialStore()
    client_dirs.config.mkdir(parents=True)
    store.path.write_text("{not json")
    assert store.get(DEFAULT_SERVER) is None
    store.save(DEFAULT_SERVER, Credentials("t", "u", later()))
    saved = store.get(DEFAULT_SERVER)
    assert saved is not None
    assert (saved.token, saved.username) == ("t", "u")


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("HTTP://Files.Example:8000/", "http://files.example:8000"),
        ("https://example.com/filesvc//", "https://example.com/filesvc"),
        ("  http://127.0.0.1:8000 ", "http://127.0.0.1:8000"),
    ],
)
def test_server_urls_are_normalized(given: str, normal: str) -> None:
    assert normalize_server(given) == normal


@pytest.mark.parametrize(
    "bad", ["files.example:8000", "ftp://files.example", "http://", "http://a/?x=1", ""]
)
def test_bad_server_urls_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="server URL"):
        normalize_server(bad)
