from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class ClientDirs:
    config: Path  # $XDG_CONFIG_HOME/filesvc
    state: Path  # $XDG_STATE_HOME/filesvc


@pytest.fixture
def client_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClientDirs:
    """The user's config and state dirs under tmp_path, and no FILESVC_* client variables."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in ("FILESVC_SERVER", "FILESVC_TOKEN", "FILESVC_USERNAME", "FILESVC_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return ClientDirs(tmp_path / "config" / "filesvc", tmp_path / "state" / "filesvc")
