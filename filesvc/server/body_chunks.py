"""A request body handed to the app as the socket delivered it, without uvicorn's two copies.

uvicorn (0.54, pinned) keeps the body bytes received and not yet read in `cycle.body`, a
bytearray: `on_body` appends each chunk to it (a copy), and `receive` makes it into bytes
for the app (a second copy). With 64 uploads of 1 MiB in flight those two lines were a
quarter of the event loop's time (py-spy), and two of the four copies of every uploaded
byte in the loop's thread. `BodyChunks` stands in for that bytearray: it keeps the chunks
as they came, so `bytes()` of it is the one chunk itself when the app reads as fast as
bytes come, and one join of the few that waited otherwise.

`on_body` is uvicorn's own with two changes. It puts a BodyChunks in place whenever the
cycle's body is empty (uvicorn's `receive` does the rest unchanged: `bytes`, then a new
empty bytearray once read). And it stops reading the socket past BODY_HIGH_WATER bytes
waiting, not past uvicorn's 64 KiB. uvloop reads up to 256,000 bytes at a time, so with
64 KiB the socket of a fast upload was paused after every read and resumed by the app's
next `receive`, each read costing two epoll changes, an app wakeup and a `receive`
through every middleware. Now a second read comes before the pause, and the app takes
both as one message (one join). A higher mark read big uploads faster still, but every
connection holds what it lets wait: at 1 MiB, 50 concurrent 1 MiB uploads to S3 raised
the server's peak RSS from 189 to 211 MiB (README, "Durable writes").
"""

from __future__ import annotations

from typing import Any

# Bytes received and not yet read by the app past which the socket stops being read: at
# least one of uvloop's reads, so that a second one comes before the pause. A connection
# holds at most this and one read.
BODY_HIGH_WATER = 256 * 1024


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
    """Mixed in before uvicorn's HttpToolsProtocol, whose attributes these are."""

    cycle: Any
    parser: Any
    flow: Any

    def on_body(self, body: bytes) -> None:
        """uvicorn's own `on_body`, with BodyChunks and BODY_HIGH_WATER."""
        cycle = self.cycle
        upgrade = self.parser.should_upgrade() and self._should_upgrade()  # type: ignore[attr-defined]
        if upgrade or cycle.response_complete:
            return
        if not cycle.body:  # uvicorn's empty bytearray, new for every read
            cycle.body = BodyChunks()
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()
