from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from filesvc.config import GiB, Settings


def test_defaults_live_in_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FILESVC_DATABASE_URL", "FILESVC_STORAGE_DIR", "FILESVC_MAX_UPLOAD_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FILESVC_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'filesvc.db'}"
    assert settings.resolved_storage_dir == tmp_path / "blobs"
    assert settings.max_upload_bytes == 10 * GiB


def test_comma_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILESVC_ALLOWED_CONTENT_TYPES", "image/*, text/plain,")
    monkeypatch.setenv("FILESVC_CORS_ORIGINS", "https://a.example")
    settings = Settings()
    assert settings.allowed_content_types == ["image/*", "text/plain"]
    assert settings.cors_origins == ["https://a.example"]


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILESVC_SECRET_KEY", "very-secret-signing-key-" + "k" * 32)
    monkeypatch.setenv("FILESVC_ADMIN_PASSWORD", "very-secret-password")
    text = repr(Settings())
    assert "very-secret" not in text


def test_finished_transfers_are_kept_at_least_five_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FILESVC_TRANSFER_RETENTION_SECONDS", raising=False)
    assert Settings().transfer_retention_seconds == 600
    assert Settings(transfer_retention_seconds=300).transfer_retention_seconds == 300
    with pytest.raises(ValidationError, match="transfer_retention_seconds"):
        Settings(transfer_retention_seconds=299)
    monkeypatch.setenv("FILESVC_TRANSFER_RETENTION_SECONDS", "299")
    with pytest.raises(ValidationError, match="transfer_retention_seconds"):
        Settings()
