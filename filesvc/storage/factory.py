from __future__ import annotations

from filesvc.config import Settings
from filesvc.storage.base import Storage
from filesvc.storage.local import LocalStorage


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "local":
        return LocalStorage(settings.resolved_storage_dir)
    if settings.storage == "s3":
        # Imported here: boto3 costs memory and start-up time the local backend never needs.
        from filesvc.storage.s3 import S3Storage
        from filesvc.storage.s3_client import S3Calls, S3Options, build_client

        assert settings.s3_bucket is not None  # checked by Settings
        options = S3Options(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            max_pool_connections=settings.s3_max_pool_connections,
            part_size=settings.s3_part_size_bytes,
            connect_timeout=settings.s3_connect_timeout_seconds,
            read_timeout=settings.s3_read_timeout_seconds,
            max_attempts=settings.s3_max_attempts,
            presign_expiry_seconds=settings.s3_presign_expiry_seconds,
        )
        return S3Storage(S3Calls(build_client(options), options))
    raise ValueError(f"unknown storage backend {settings.storage!r}")
