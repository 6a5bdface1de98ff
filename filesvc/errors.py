"""The error tree: each error knows its status and code; handlers render the JSON shape."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from filesvc.openapi import allowed_methods

logger = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 500
    code = "internal_error"
    detail = "Internal server error."

    def __init__(self, detail: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        if detail is not None:
            self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class NotAuthenticated(AppError):
    status_code = 401
    code = "not_authenticated"
    detail = "Not authenticated."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    detail = "Incorrect username or password."


class PermissionDenied(AppError):
    status_code = 403
    code = "permission_denied"
    detail = "You do not have permission to do this."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    detail = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "range_not_satisfiable"
    detail = "The requested range is not satisfiable."

    def __init__(self, size: int) -> None:
        super().__init__(headers={"Content-Range": f"bytes */{size}"})


class BodyTimeout(StarletteHTTPException):
    """The request body stopped arriving. A Starlette HTTPException, so FastAPI's own body
    parsing lets it through rather than turning it into a 400; the connection is closed,
    since the rest of the body can no longer be told apart from a next request."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The request body stopped arriving for {seconds:g} seconds.",
            headers={"Connection": "close"},
        )


class ErrorBody(BaseModel):
    """The shape of every error reply (422 keeps FastAPI's list in `detail`)."""

    detail: str
    code: str


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors an endpoint may answer: what a status means on that
    route, where `descriptions` says so, else its bare HTTP phrase."""
    described = descriptions or {}
    assert set(described) <= set(statuses), "a description for a status not listed"
    return {
        status: {
            "model": ErrorBody,
            "description": described.get(status, HTTPStatus(status).phrase),
        }
        for status in statuses
    }


def error_response(
    status_code: int, code: str, detail: object, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status_code, headers=headers)


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(exc.status_code, code, exc.detail, headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Inputs are echoed back by default; drop them so no password ends up in a response.
    errors = [{k: v for k, v in err.items() if k not in ("input", "ctx")} for err in exc.errors()]
    return error_response(422, "validation_error", errors)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # The server logs the traceback; the client gets the shape, never the internals.
    return error_response(500, AppError.code, AppError.detail)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


async def handled_error_response(request: Request, exc: Exception) -> Response | None:
    """The app's answer to `exc` raised outside its routes (by a layer that answers before
    the router), from the handler its exception layer would pick, nearest class first.
    None for an unexpected error: raised on, the server-error layer answers and logs it."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            response = handler(request, exc)  # this app's handlers are all async
            return cast(Response, await response if inspect.isawaitable(response) else response)
    return None
