"""Raw uploads (`PUT /api/v1/files/raw/{name}`) taken without FastAPI's routing and
dependency solving.

A small upload's cost is mostly per request: through the router a 4 KiB upload took 1.0 to
1.5 CPU-ms of the main thread, a third of it matching routes, solving a dozen dependencies
and validating its answer (0.6 to 0.9 ms here), and the main thread is what small uploads
queue for. This pure ASGI layer does what the route's dependencies do, with their own
functions (the Bearer token, `user_for_token`, the editor role, the upload counters), runs
the route's own work, `store_raw_upload`, and answers as the route does: 201 with the file
and its Location, or, for an error, the answer of the app's own handler for it.

Only an upload that needs nothing more is taken here, decided before a byte of its body is
read. Everything else reaches the route unchanged, which answers it exactly as before: no
token, or one refused (401, 403); a tracked upload (`X-Transfer-Id`, `?transfer_id=`); a
`visibility` that is not one, or a repeated parameter (the route's 422 or choice).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from fastapi import status
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from filesvc.auth.dependencies import bearer_token, user_for_token
from filesvc.deps import AppContext
from filesvc.errors import handled_error_response
from filesvc.files.models import Visibility
from filesvc.files.router import store_raw_upload
from filesvc.files.schemas import file_url
from filesvc.middleware import DIRECTION_STATE
from filesvc.transfers.dependencies import counted_upload
from filesvc.transfers.service import UNTRACKED
from filesvc.users.models import Role, User

PREFIX = "/api/v1/files/raw/"
# Query parameters that need the route: a tracked upload.
_ROUTED = frozenset({"transfer_id"})


class _Routed(Exception):
    """The upload goes to the route, which answers it as it always has."""


class HotUploads:
    """Pure ASGI, beside the hot reads (files/hot_reads.py) and like them inside the
    request-context and CORS layers; `scope["route"]` is the route it stands in for."""

    def __init__(self, app: ASGIApp, route: BaseRoute) -> None:
        self.app = app
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "PUT"
            and scope["path"].startswith(PREFIX)
            and len(scope["path"]) > len(PREFIX)  # the route's name is never empty
        ):
            try:
                user, visibility = await _taken(scope)
            except _Routed:
                pass
            else:
                await self._upload(scope, receive, send, user, visibility)
                return
        await self.app(scope, receive, send)

    async def _upload(
        self, scope: Scope, receive: Receive, send: Send, user: User, visibility: Visibility | None
    ) -> None:
        context: AppContext = scope["app"].state.context
        scope["route"] = self._route
        scope.setdefault("state", {})[DIRECTION_STATE] = "upload"
        request = Request(scope, receive)
        name = scope["path"][len(PREFIX) :]
        response: Response | None
        try:
            with counted_upload(context.metrics):
                file, event = await store_raw_upload(
                    request, context, user, UNTRACKED, name, visibility
                )
        except Exception as exc:
            response = await handled_error_response(request, exc)
            if response is None:
                raise  # unexpected: the server-error layer answers and logs it, as for a route
        else:
            response = Response(
                # The route's FileRead of the file, made once already for its event (the
                # same JSON as FileRead's own, without building and checking it again).
                json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
                status.HTTP_201_CREATED,
                headers={"location": context.settings.absolute_url(file_url(file.id))},
                media_type="application/json",
            )
        await response(scope, receive, send)


async def _taken(scope: Scope) -> tuple[User, Visibility | None]:
    """The uploader and the visibility asked for, if the upload is taken here."""
    headers = Headers(scope=scope)
    token = bearer_token(headers.get("authorization"))
    if not token or "x-transfer-id" in headers:
        raise _Routed()
    visibility = _visibility(scope["query_string"])
    try:
        user = await user_for_token(token, scope["app"].state.context)
    except Exception:
        raise _Routed() from None  # the route does it again and answers the error
    if not user.role.at_least(Role.editor):
        raise _Routed()
    return user, visibility


def _visibility(query_string: bytes) -> Visibility | None:
    """`?visibility=`, as the route reads it; other parameters are ignored, as FastAPI
    ignores them."""
    if not query_string:
        return None
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not _ROUTED.isdisjoint(query):
        raise _Routed()
    value = query.get("visibility")
    try:
        return None if value is None else Visibility(value)
    except ValueError:
        raise _Routed() from None
