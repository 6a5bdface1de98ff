"""FILESVC_LOG_FORMAT=json on a real `filesvc serve`: every line it writes, uvicorn's
included, is one JSON object, and the access line carries what log search needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import create_user, run_server, wait_for

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_line_is_json_with_the_request_id(tmp_path: Path) -> None:
    with run_server(tmp_path, {"FILESVC_LOG_FORMAT": "json"}) as server:
        editor = create_user(server, "editor")
        response = httpx.put(
            server.url("/api/v1/files/raw/log.txt"),
            content=b"logged",
            headers={**server.auth(editor.token), "X-Request-ID": "json-log-1"},
        )
        assert response.status_code == 201

        def access_line() -> dict[str, Any] | None:
            for entry in json_lines(server.stderr_path):
                if entry.get("request_id") == "json-log-1" and entry["logger"] == "filesvc.access":
                    return entry
            return None

        wait_for(lambda: access_line() is not None, timeout=10, what="the access line")
        entry = access_line()
        assert entry is not None
        assert entry["level"] == "INFO"
        assert entry["method"] == "PUT"
        assert entry["route"] == "/api/v1/files/raw/{name}"
        assert entry["status"] == 201
        assert entry["bytes_received"] == len(b"logged")
        assert entry["bytes_sent"] == len(response.content)
        assert entry["duration_ms"] > 0
        assert editor.token not in server.stderr_path.read_text()
    # Start-up and shutdown lines too (json.loads above fails on any other line).
    loggers = {entry["logger"] for entry in json_lines(server.stderr_path)}
    assert {"uvicorn.error", "filesvc.access"} <= loggers
