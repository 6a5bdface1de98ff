"""How a tracked download ends, as the transfer middleware sees its response."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from filesvc.config import Settings
from filesvc.transfers.asgi import TransferMiddleware
from filesvc.transfers.broker import InProcessBroker
from filesvc.transfers.dependencies import TRANSFER_STATE
from filesvc.transfers.service import TransferHub

BODY = b"x" * 1000


def hub(tmp_path: Path) -> TransferHub:
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("test-secret-key-" + "x" * 32))
    return TransferHub(InProcessBroker(), settings)


def cut_response(sent: bytes) -> ASGIApp:
    """A response that sends `sent` of BODY's declared length, then stops without its
    closing (empty) message, as a response does when it hears the client leave."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", str(len(BODY)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": sent, "more_body": True})

    return app


async def final_event(tmp_path: Path, sent: bytes) -> dict[str, object]:
    transfers = hub(tmp_path)
    transfer = await transfers.begin("t1", None, "download", None)
    scope: Scope = {"type": "http", "state": {TRANSFER_STATE: transfer}}
    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    await TransferMiddleware(cut_response(sent))(scope, receive, send)
    record = await transfers.load("t1")
    assert record is not None
    return {"event": record.last.event, **json.loads(record.last.data_json)}


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(BODY, "complete"), (BODY[:-1], "failed"), (b"", "failed")],
    ids=["every-byte", "one-short", "none"],
)
async def test_a_download_the_client_left_is_complete_only_if_every_byte_went_out(
    tmp_path: Path, sent: bytes, expected: str
) -> None:
    # curl closes once it has Content-Length bytes, which can be before the response's
    # closing message; a response cut short of its length is a client gone.
    final = await final_event(tmp_path, sent)
    assert final["event"] == expected
    assert final["bytes"] == len(sent)
    assert final["total"] == len(BODY)
