"""The bytes of small files most recently downloaded, kept in memory per process.

Thumbnails and avatars are read far more often than written, and reading one from disk
costs a thread hop (on S3, a round trip through boto3's threads), several times the
rest of the request. A blob never changes under its storage key (new content gets a new
key), so a cached copy can never be stale; the row is still read and checked on every
request, so a deleted file or a lost right to read it shows at once.
"""

from __future__ import annotations

from collections import OrderedDict


class SmallBlobCache:
    def __init__(self, capacity_bytes: int, max_item_bytes: int) -> None:
        self._capacity = capacity_bytes
        self.max_item_bytes = min(max_item_bytes, capacity_bytes)
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, key: str) -> bytes | None:
        body = self._items.get(key)
        if body is not None:
            self._items.move_to_end(key)
        return body

    def put(self, key: str, body: bytes) -> None:
        if len(body) > self.max_item_bytes or key in self._items:
            return
        self._items[key] = body
        self._size += len(body)
        while self._size > self._capacity:
            _, evicted = self._items.popitem(last=False)
            self._size -= len(evicted)
