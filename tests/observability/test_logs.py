"""FILESVC_LOG_FORMAT=json: one JSON object a line, the request id on every line logged
while a request is served, and no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from filesvc.config import Settings
from filesvc.observability.logs import (
    TEXT_FORMAT,
    JsonFormatter,
    TurnBatchedHandler,
    logging_config,
)
from tests.conftest import Account, break_storage
from tests.files.helpers import uploaded


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, formatted as it is emitted (as a real handler does)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    """The server's lines (the test client logs its URLs, tokens and all)."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in lines if entry["logger"] != "httpx"]


async def test_the_access_line_is_one_json_object(
    client: httpx.AsyncClient, editor: Account, json_lines: io.StringIO
) -> None:
    file = await uploaded(client, editor)
    response = await client.get(
        f"{file['content_url']}?access_token={editor.token}",
        headers={"X-Request-ID": "req-42"},
    )
    assert response.status_code == 200
    [access] = [
        e
        for e in entries(json_lines)
        if e["logger"] == "filesvc.access" and e["request_id"] == "req-42"
    ]
    assert access["level"] == "INFO"
    assert access["time"].endswith("+00:00")
    assert access["method"] == "GET"
    assert access["route"] == "/api/v1/files/{file_id}/content"
    assert access["path"] == file["content_url"]
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
    assert access["bytes_sent"] == len(response.content)
    assert access["bytes_received"] == 0
    assert editor.token not in json.dumps(entries(json_lines))


async def test_other_lines_carry_the_request_id_they_were_logged_under(
    client: httpx.AsyncClient, settings: Settings, json_lines: io.StringIO
) -> None:
    break_storage(settings)
    assert (await client.get("/readyz", headers={"X-Request-ID": "ready-7"})).status_code == 503
    [warning] = [e for e in entries(json_lines) if e["logger"] == "filesvc.health"]
    assert warning["request_id"] == "ready-7"
    assert warning["level"] == "WARNING"
    assert "exception" in warning  # the traceback, inside the one JSON line


async def test_share_link_tokens_stay_out_of_json_lines(
    client: httpx.AsyncClient, editor: Account, json_lines: io.StringIO
) -> None:
    file = await uploaded(client, editor)
    link = await client.post(f"/api/v1/files/{file['id']}/links", json={}, headers=editor.headers)
    url = link.json()["url"]
    assert (await client.get(url)).status_code == 200
    assert url.rsplit("/", 1)[1] not in json.dumps(entries(json_lines))
    assert any(e.get("path") == "/api/v1/shared/{token}" for e in entries(json_lines))


def test_the_text_format_stays_the_default() -> None:
    assert Settings().log_format == "text"
    assert logging_config("text", "info")["formatters"]["filesvc"] == {"format": TEXT_FORMAT}
    assert logging_config("json", "info")["formatters"]["filesvc"] == {"()": JsonFormatter}


class CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def batched_logger() -> tuple[logging.Logger, TurnBatchedHandler, CountedWrites]:
    stream = CountedWrites()
    handler = TurnBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batched.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, handler, stream


async def test_lines_of_one_loop_turn_are_written_together_in_order() -> None:
    logger, _, stream = batched_logger()

    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == []  # until this turn of the loop ends
    await asyncio.sleep(0)

    assert stream.writes == ["INFO line 0\nINFO line 1\nINFO line 2\n"]
    logger.info("next turn")
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["INFO next turn\n"]


async def test_a_warning_is_written_at_once_after_the_waiting_lines() -> None:
    logger, _, stream = batched_logger()

    logger.info("waiting")
    logger.warning("now")

    assert stream.getvalue() == "INFO waiting\nWARNING now\n"
    await asyncio.sleep(0)
    assert stream.getvalue() == "INFO waiting\nWARNING now\n"  # nothing twice


async def test_lines_off_the_loop_and_a_flush_are_written_at_once() -> None:
    logger, handler, stream = batched_logger()

    logger.info("on the loop")
    await asyncio.to_thread(logger.info, "in a thread")
    assert stream.getvalue() == "INFO on the loop\nINFO in a thread\n"

    logger.info("before shutdown")
    handler.flush()  # logging.shutdown() at exit
    assert stream.getvalue().endswith("INFO before shutdown\n")


def test_a_line_left_by_a_loop_that_ended_is_not_lost() -> None:
    logger, handler, stream = batched_logger()

    async def log(message: str) -> None:
        logger.info(message)

    asyncio.run(log("last turn of a loop"))  # the loop closes before its next turn
    logger.info("no loop")
    asyncio.run(log("another loop"))

    handler.flush()

    assert stream.getvalue().splitlines() == [
        "INFO last turn of a loop",
        "INFO no loop",
        "INFO another loop",
    ]
