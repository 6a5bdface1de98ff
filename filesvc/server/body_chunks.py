"""A request body handed to the app as the socket delivered it, without uvicorn's two copies.

uvicorn (0.54, pinned) keeps the body bytes received and not yet read in `cycle.body`, a
bytearray: `on_body` appends each chunk to it (a copy), and `receive` makes it into bytes
for the app (a second copy). With 64 uploads of 1 MiB in flight those two lines were a
quarter of the event loop's time (py-spy), and two of the four copies of every uploaded
byte in the loop's thread. `BodyChunks` stands in for that bytearray: it keeps the chunks
as they came, so `bytes()` of it is the one chunk itself when the app reads as fast as
bytes come, and one join of the few that waited otherwise.

`on_body` puts one in place whenever the cycle's body is empty; uvicorn's own code does
the rest unchanged (`+=`, `len` against its high-water mark, `bytes`, then a new empty
bytearray once read).
"""

from __future__ import annotations

from typing import Any


class BodyChunks:
    """Chunks received and not yet read, in order: `+=` one, `len`, and `bytes()`."""

    __slots__ = ("_chunks", "_size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def __iadd__(self, chunk: bytes) -> BodyChunks:
        self._chunks.append(chunk)
        self._size += len(chunk)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        if len(self._chunks) == 1:
            return self._chunks[0]
        return b"".join(self._chunks)


class ChunkedBody:
    """Mixed in before uvicorn's HttpToolsProtocol (`super()` is that class)."""

    cycle: Any

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not cycle.body:  # uvicorn's empty bytearray, new for every read
            cycle.body = BodyChunks()
        super().on_body(body)  # type: ignore[misc]
