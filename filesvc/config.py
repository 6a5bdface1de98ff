"""Settings, read from the environment (prefix FILESVC_) when the app is built."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024**2
GiB = 1024**3


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FILESVC_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    # S3 backend; credentials come the standard boto3 way (AWS_ACCESS_KEY_ID, profiles, …).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Threads for blocking boto3 calls, and botocore's connection pool: the same number.
    s3_max_pool_connections: int = Field(default=100, gt=0)
    # S3 wants parts of at least 5 MiB (but the last); below one part, a single PutObject.
    s3_part_size_bytes: int = Field(default=8 * MiB, ge=5 * MiB, le=5 * GiB)
    s3_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=60.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1)
    s3_presign_expiry_seconds: int = Field(default=300, gt=0, le=7 * 24 * 3600)
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

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("FILESVC_STORAGE=s3 needs FILESVC_S3_BUCKET")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'filesvc.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "blobs"
