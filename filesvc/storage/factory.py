from __future__ import annotations

from filesvc.config import Settings
from filesvc.storage.base import Storage
from filesvc.storage.local import LocalStorage


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "local":
        return LocalStorage(settings.resolved_storage_dir)
    raise ValueError(f"unknown storage backend {settings.storage!r}")
