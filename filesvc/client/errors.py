"""What goes wrong on the client side, as one message a person can act on."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # httpx is imported by the commands that talk to a server, not before
    import httpx


class ClientError(Exception):
    """Printed as `filesvc: <message>`; the command exits with `exit_code`.

    `fatal` errors (auth, an unreachable server) stop a multi-file command; the others
    only fail the file at hand.
    """

    exit_code = 1
    fatal = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    exit_code = 2


class FileError(ClientError):
    """One file cannot be read, written or stored; the next one may still go."""

    fatal = False


class ServerError(ClientError):
    def __init__(self, message: str, status_code: int, *, fatal: bool) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.fatal = fatal


def server_detail(response: httpx.Response) -> str:
    """The server's JSON `detail` (and `code`), else the status line."""
    import httpx

    try:
        body = json.loads(response.read() or b"null")
    except (ValueError, httpx.StreamError):
        body = None
    if isinstance(body, dict) and body.get("detail"):
        detail = body["detail"]
        if not isinstance(detail, str):  # FastAPI's 422 list
            detail = json.dumps(detail)
        code = body.get("code")
        return f"{detail} ({code})" if isinstance(code, str) else detail
    return f"{response.status_code} {response.reason_phrase}".strip()


def error_from_response(response: httpx.Response, action: str, server: str) -> ServerError:
    """`action` says what was attempted: "upload big.iso", "download 1234"."""
    status = response.status_code
    if status == 401:
        message = (
            f"{action}: not signed in to {server}, or the token expired "
            f"({server_detail(response)}): run `filesvc login --server {server}` "
            "or pass --token / FILESVC_TOKEN"
        )
        return ServerError(message, status, fatal=True)
    message = f"{action}: the server answered {status}: {server_detail(response)}"
    # Auth and server faults hold for every file; the rest is about this file.
    return ServerError(message, status, fatal=status in (403,) or status >= 500)


def error_from_transport(exc: httpx.TransportError, server: str) -> ClientError:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection failed"
        return ClientError(f"cannot connect to {server}: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return ClientError(f"{server} did not answer in time ({type(exc).__name__})")
    return ClientError(f"the connection to {server} failed: {exc or type(exc).__name__}")
