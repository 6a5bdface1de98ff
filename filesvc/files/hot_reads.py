"""The two hottest reads, answered without FastAPI's routing and dependency solving.

`GET /api/v1/files/{id}` and `GET|HEAD /api/v1/files/{id}/content` are most of what a page
of thumbnails or avatars asks for. Through the router each costs about three times its
real work (matching some sixty routes, then solving a dozen dependencies: 0.65 CPU-ms
for a 4 KiB download against 0.2 here), so this pure ASGI layer answers them itself, with
the very functions their routes use: the token by `user_for_token`, the row by a point
read, the rule by `check_readable`, the body by `file_response`.

It answers only what succeeds with a body already in hand: metadata, a 304, or a whole
small file (up to the small-file cache's item size, from the cache or one read).
Everything else goes on to the routes unchanged, which answer it exactly as before: an
unknown id or a refusal, any error, ranges, bigger files (streamed, so their cost is the
bytes, not this), a tracked transfer (`X-Transfer-Id`, `?transfer_id=`), `?redirect=`, or
a query it does not understand.
Reads change nothing, so a request tried here first and then routed is harmless.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from filesvc.auth.dependencies import user_for_token
from filesvc.deps import AppContext
from filesvc.files.dependencies import check_readable
from filesvc.files.downloads import file_response
from filesvc.files.models import File
from filesvc.files.schemas import FileRead
from filesvc.middleware import DIRECTION_STATE

PREFIX = "/api/v1/files/"
# An id (never holding a slash), then nothing (metadata) or `/content`.
_PATH = re.compile(r"/api/v1/files/([^/]+)(/content)?")
_DISPOSITIONS = frozenset({"attachment", "inline"})
# Content query parameters that need the route: tracking and redirects.
_ROUTED = frozenset({"transfer_id", "redirect"})


class HotReads:
    """Pure ASGI, inside the request-context and CORS layers (ids, logs, metrics and CORS
    headers stay as for any request); `scope["route"]` is set to the route it stands in
    for, so metrics label the request by that route's template."""

    def __init__(self, app: ASGIApp, metadata_route: BaseRoute, content_route: BaseRoute) -> None:
        self.app = app
        self._metadata_route = metadata_route
        self._content_route = content_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            response = await self._answer(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        file_id, content = match.group(1), match.group(2) is not None
        method = scope["method"]
        if method != "GET" and not (content and method == "HEAD"):
            return None
        headers = Headers(scope=scope)
        _, token = get_authorization_scheme_param(headers.get("authorization"))
        disposition = "attachment"
        if content:
            query = _content_query(scope["query_string"])
            if query is None or "x-transfer-id" in headers:
                return None
            token = token or query.get("access_token", "")
            disposition = query.get("disposition", disposition)
        # (The metadata route takes the header's token only and no query parameter.)
        context: AppContext = scope["app"].state.context
        try:
            user = await user_for_token(token, context) if token else None
            file = check_readable(await context.db.point_reads.get(File, file_id), user)
            if not content:
                response = _json(FileRead.of(file))
            elif "range" in headers or file.size > context.small_blobs.max_item_bytes:
                return None
            else:
                response = await file_response(
                    context.storage, context.small_blobs, file, Request(scope), disposition
                )
        except Exception:
            # Not answered here: the route does it all again and answers the error itself,
            # through the app's handlers, as it always has.
            return None
        if type(response) is not Response:
            # Only bodies already in hand (or a 304): a streamed one can still fail once
            # sent, and only the route's handlers turn that into the right answer.
            return None
        scope["route"] = self._content_route if content else self._metadata_route
        if content:
            scope.setdefault("state", {})[DIRECTION_STATE] = "download"
        return response


def _content_query(query_string: bytes) -> dict[str, str] | None:
    """`access_token` and `disposition`, as the route reads them; None where the route must
    answer (a tracked or redirected download, a repeated or invalid parameter). Other
    parameters are ignored, as FastAPI ignores them."""
    if not query_string:
        return {}
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not _ROUTED.isdisjoint(query):
        return None
    if query.get("disposition", "attachment") not in _DISPOSITIONS:
        return None
    return query


def _json(model: FileRead) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")
