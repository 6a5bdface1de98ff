"""The one boto3 client the S3 backend shares, its thread pool, and its error mapping.

boto3 blocks, so every call runs in a pool of our own, sized like botocore's connection
pool: a slow transfer then never waits on another's thread or on asyncio's default
executor (which `to_thread` work elsewhere in the service shares).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from filesvc.storage.base import ObjectAlreadyExists, ObjectNotFound, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

P = ParamSpec("P")
T = TypeVar("T")

MiB = 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_FAILED = {"412", "PreconditionFailed"}
# Read errors a streaming body raises from below botocore.
TRANSPORT_ERRORS = (BotoCoreError, Urllib3Error, OSError)


@dataclass(frozen=True, slots=True)
class S3Options:
    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    max_pool_connections: int = 100
    part_size: int = 8 * MiB
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    presign_expiry_seconds: int = 300


def botocore_config(options: S3Options) -> Config:
    return Config(
        region_name=options.region,
        # SeaweedFS and older MinIO reject anything but SigV4, presigned URLs included.
        signature_version="s3v4",
        # Path-style when an endpoint is given: S3-compatible stores rarely have
        # wildcard DNS for virtual-hosted buckets.
        s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        # botocore's default CRC32 trailers on every upload are unknown to many
        # S3-compatible stores; our own SHA-256 already guards the bytes end to end.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=options.max_pool_connections,
        connect_timeout=options.connect_timeout,
        # Per socket read, not per request: a long download is fine, a stalled one is not.
        read_timeout=options.read_timeout,
        # total_max_attempts counts the first try; botocore's max_attempts would count
        # only the retries after it.
        retries={"total_max_attempts": options.max_attempts, "mode": "standard"},
        tcp_keepalive=True,
    )


@functools.cache
def _data_loader() -> botocore.loaders.Loader:
    # Parsing botocore's JSON models is most of the cost of a client (~50 ms); keep them
    # for the process, so building an app (tests build hundreds) stays cheap.
    return botocore.loaders.create_loader()


def build_client(options: S3Options) -> S3Client:
    # A fresh session each time: credentials are resolved the standard way (environment,
    # shared files, instance roles) when the client is built, never cached across apps.
    core = botocore.session.get_session()
    core.register_component("data_loader", _data_loader())
    session = boto3.session.Session(botocore_session=core)
    client: S3Client = session.client(
        "s3", endpoint_url=options.endpoint_url, config=botocore_config(options)
    )
    return client


class S3Calls:
    """Runs blocking boto3 calls in the backend's own thread pool."""

    def __init__(self, client: S3Client, options: S3Options) -> None:
        self.client = client
        self.options = options
        self._executor = ThreadPoolExecutor(
            max_workers=options.max_pool_connections, thread_name_prefix="filesvc-s3"
        )

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def map_error(exc: BaseException, action: str, key: str) -> StorageError:
    """A storage error for a boto3 failure; messages carry codes, never credentials."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _NOT_FOUND:
            return ObjectNotFound(key)
        if code in _PRECONDITION_FAILED:
            return ObjectAlreadyExists(key)
        message = exc.response.get("Error", {}).get("Message", "")
        return StorageError(f"S3 {action} of {key!r} failed: {code} {message}".rstrip())
    return StorageError(f"S3 {action} of {key!r} failed: {type(exc).__name__}: {exc}")
