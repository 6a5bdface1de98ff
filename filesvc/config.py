"""Settings, read from the environment (prefix FILESVC_) when the app is built."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GiB = 1024**3


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FILESVC_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    storage: Literal["local"] = "local"
    storage_dir: Path | None = None
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    admin_password: SecretStr | None = None
    max_upload_bytes: int = Field(default=10 * GiB, gt=0)
    max_batch_files: int = Field(default=100, gt=0)
    user_quota_bytes: int | None = Field(default=None, gt=0)
    allowed_content_types: Annotated[list[str], NoDecode] = []
    cors_origins: Annotated[list[str], NoDecode] = []
    access_token_ttl_seconds: int = Field(default=3600, gt=0)

    _split = field_validator("allowed_content_types", "cors_origins", mode="before")(_split_commas)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'filesvc.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "blobs"
