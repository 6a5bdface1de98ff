"""Which server to talk to and with which token: flags, then the environment, then what
`filesvc login` stored in the user's config dir (credentials.json, mode 0600)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from filesvc.client.errors import UsageError
from filesvc.client.store import JsonStore, config_dir

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_ENV = "FILESVC_SERVER"
TOKEN_ENV = "FILESVC_TOKEN"  # noqa: S105 - a variable's name
# A token this close to its expiry is treated as expired: a long upload would fail midway.
EXPIRY_MARGIN_SECONDS = 30


def normalize_server(url: str) -> str:
    """`HTTP://Host:8000/` → `http://host:8000`; a path prefix (behind a proxy) is kept."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"not a server URL: {url!r} (expected http://host:port or https://…)")
    if parts.query or parts.fragment:
        raise UsageError(f"a server URL has no query or fragment: {url!r}")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Credentials:
    token: str
    username: str
    expires_at: float  # Unix time

    def expired(self, now: float | None = None) -> bool:
        return (now or time.time()) >= self.expires_at - EXPIRY_MARGIN_SECONDS


class CredentialStore:
    """Tokens by server, and the server signed in to last (the default one)."""

    def __init__(self, path: Path | None = None) -> None:
        self.store = JsonStore(path or config_dir() / "credentials.json")

    @property
    def path(self) -> Path:
        return self.store.path

    def get(self, server: str) -> Credentials | None:
        entry = self.store.read().get("servers", {}).get(server)
        if not isinstance(entry, dict):
            return None
        try:
            return Credentials(
                str(entry["token"]), str(entry["username"]), float(entry["expires_at"])
            )
        except (KeyError, TypeError, ValueError):
            return None

    def default_server(self) -> str | None:
        server = self.store.read().get("default_server")
        return server if isinstance(server, str) else None

    def save(self, server: str, credentials: Credentials) -> None:
        with self.store.update() as data:
            servers = data.setdefault("servers", {})
            servers[server] = {
                "token": credentials.token,
                "username": credentials.username,
                "expires_at": credentials.expires_at,
            }
            data["default_server"] = server


@dataclass(frozen=True)
class Target:
    server: str
    token: str | None


def resolve_server(flag: str | None, store: CredentialStore) -> str:
    """--server, else $FILESVC_SERVER, else the server of the last login, else the default."""
    return normalize_server(
        flag or os.environ.get(SERVER_ENV) or store.default_server() or DEFAULT_SERVER
    )


def resolve_target(
    server_flag: str | None, token_flag: str | None, store: CredentialStore | None = None
) -> Target:
    """The server and its token: --token, else $FILESVC_TOKEN, else the stored one while it
    is valid (an expired one is left out: the server's 401 then says to sign in again)."""
    store = store or CredentialStore()
    server = resolve_server(server_flag, store)
    token = token_flag or os.environ.get(TOKEN_ENV)
    if not token:
        stored = store.get(server)
        token = stored.token if stored is not None and not stored.expired() else None
    return Target(server, token)
