"""A small tus 1.0 client: creation, HEAD for the offset, PATCH with a checksum.

https://tus.io/protocols/resumable-upload — the server's answers drive everything: after a
failure the client asks `HEAD` where to go on from, never assumes its own count.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUM_MISMATCH = 460


class UploadGone(Exception):
    """The upload URL is no longer there (expired, terminated, someone else's)."""


class TusProtocolError(Exception):
    """The server answered outside the protocol (no Location, no Upload-Offset)."""


@dataclass(frozen=True)
class Finished:
    file_id: str
    file_location: str | None


@dataclass(frozen=True)
class Patched:
    offset: int
    finished: Finished | None


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """`key base64(value),…`; keys are ASCII without spaces or commas."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
        for key, value in metadata.items()
    )


def sha256_checksum(pieces: Iterable[bytes]) -> str:
    """The `Upload-Checksum` value of a chunk given in pieces."""
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return "sha256 " + base64.b64encode(digest.digest()).decode("ascii")


def _finished(response: httpx.Response) -> Finished | None:
    file_id = response.headers.get("x-file-id")
    if not file_id:
        return None
    location = response.headers.get("x-file-location")
    return Finished(file_id, urljoin(str(response.url), location) if location else None)


def _offset(response: httpx.Response) -> int:
    value = response.headers.get("upload-offset", "")
    if not value.isdigit():
        raise TusProtocolError(
            f"{response.request.method} {response.url} answered {response.status_code} "
            "without a valid Upload-Offset"
        )
    return int(value)


class TusClient:
    """Speaks tus to the server behind `client` (whose base URL is the API's root).

    Methods return on success and hand any other response back to the caller, which
    turns it into a message or a retry: the protocol lives here, the policy upstairs.
    """

    def __init__(self, client: httpx.Client, endpoint: str = "/uploads") -> None:
        self.client = client
        self.endpoint = endpoint
        self.headers = {"Tus-Resumable": TUS_VERSION}

    def create(self, length: int, metadata: Mapping[str, str]) -> httpx.Response:
        """POST the creation request; a 201 carries the upload's `Location`."""
        headers = self.headers | {
            "Upload-Length": str(length),
            "Upload-Metadata": encode_metadata(metadata),
        }
        return self.client.post(self.endpoint, headers=headers)

    @staticmethod
    def location(response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise TusProtocolError("the server created an upload but sent no Location")
        return str(urljoin(str(response.url), location))

    @staticmethod
    def finished(response: httpx.Response) -> Finished | None:
        """The stored file, on the response that completed the upload."""
        return _finished(response)

    def head(self, url: str) -> tuple[int, int | None]:
        """(Upload-Offset, Upload-Length) of a live upload; UploadGone if it is not."""
        response = self.client.head(url, headers=self.headers | {"Cache-Control": "no-store"})
        if response.status_code in (403, 404, 410):
            raise UploadGone(url)
        response.raise_for_status()
        length = response.headers.get("upload-length", "")
        return _offset(response), int(length) if length.isdigit() else None

    def patch(
        self, url: str, offset: int, body: Iterable[bytes], length: int, checksum: str | None
    ) -> httpx.Response:
        headers = self.headers | {
            "Upload-Offset": str(offset),
            "Content-Type": OFFSET_CONTENT_TYPE,
            # An explicit length: httpx then sends the iterator as is, not chunked.
            "Content-Length": str(length),
        }
        if checksum:
            headers["Upload-Checksum"] = checksum
        return self.client.patch(url, headers=headers, content=body)

    @staticmethod
    def patched(response: httpx.Response) -> Patched:
        return Patched(_offset(response), _finished(response))
