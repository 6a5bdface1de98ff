"""Settings, read from the environment (prefix FILESVC_) when the app is built."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024**2
GiB = 1024**3
# HS256 keys shorter than the hash output make tokens and share links guessable offline.
MIN_SECRET_KEY_BYTES = 32


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected secret must not be echoed into a console or log.
    model_config = SettingsConfigDict(
        env_prefix="FILESVC_", extra="ignore", hide_input_in_errors=True
    )

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
    public_url: AnyHttpUrl | None = None
    max_archive_files: int = Field(default=1000, gt=0)
    # Transfers and event streams.
    progress_interval_seconds: float = Field(default=0.1, gt=0)
    transfer_retention_seconds: int = Field(default=600, ge=300)
    transfer_pending_seconds: int = Field(default=3600, gt=0)
    max_streams_per_user: int = Field(default=16, gt=0)
    max_stream_seconds: int = Field(default=3600, gt=0)
    sse_retry_ms: int = Field(default=2000, ge=0)
    events_replay_window: int = Field(default=10000, gt=0)
    # Operations: metrics, logs, slow clients, shutdown.
    metrics_token: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    body_idle_timeout_seconds: float = Field(default=60.0, gt=0)
    header_timeout_seconds: float = Field(default=30.0, gt=0)
    send_timeout_seconds: float = Field(default=60.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # tus: an unfinished upload left idle this long expires (404/410; `gc` removes it).
    tus_expiration_seconds: int = Field(default=86400, gt=0)
    # Small files' bytes kept in memory per process once downloaded (0 turns it off).
    small_file_cache_bytes: int = Field(default=32 * MiB, ge=0)
    small_file_cache_max_file_bytes: int = Field(default=256 * 1024, ge=0, le=MiB)

    _split = field_validator("allowed_content_types", "cors_origins", mode="before")(_split_commas)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"FILESVC_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes; "
                "unset it to have one generated into the data dir"
            )
        return value

    def absolute_url(self, path: str) -> str:
        """`path` under FILESVC_PUBLIC_URL, or the bare path without one (never from Host)."""
        if self.public_url is None:
            return path
        return str(self.public_url).rstrip("/") + path

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
