from fastapi import FastAPI, Request, Response

from filesvc.errors import AppError, BadRequest, Conflict, NotFound


class TransferNotFound(NotFound):
    code = "transfer_not_found"
    detail = "Transfer not found."


class InvalidTransferId(BadRequest):
    code = "invalid_transfer_id"
    detail = "A transfer id is 1 to 64 of A-Z, a-z, 0-9, `_` and `-`."


class TransferIdTaken(Conflict):
    code = "transfer_id_taken"
    detail = "This transfer id is taken by another user or another transfer."


class TooManyStreams(AppError):
    status_code = 429
    code = "too_many_streams"
    detail = "Too many event streams open; close one first."


class StreamOver(Exception):
    """A reconnect after the final event: 204 tells an EventSource to stop reconnecting."""


async def _stream_over(_: Request, exc: Exception) -> Response:
    return Response(status_code=204)


def install_transfer_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StreamOver, _stream_over)
