"""The hottest reads, answered without FastAPI's routing and dependency solving.

`GET /api/v1/files/{id}`, `GET|HEAD /api/v1/files/{id}/content` and
`GET|HEAD /api/v1/shared/{token}` are most of what a page of thumbnails or avatars asks
for. Through the router each costs about three times its real work (matching every route,
then solving a dozen dependencies: 0.65 CPU-ms for a 4 KiB download against 0.2 here), so
this pure ASGI layer answers them itself, with the very functions their routes use: the
token by `user_for_token`, the row by a point read, the rule by `check_readable` (a share
link by `shared_file`), the body by `file_response`.

It answers only what succeeds with a body already in hand: metadata, a 304, or a whole
small file (up to the small-file cache's item size, from the cache or one read).
Everything else goes on to the routes unchanged, which answer it exactly as before: an
unknown id or a refusal, any error, ranges, bigger files (streamed, so their cost is the
bytes, not this), a tracked transfer (`X-Transfer-Id`, `?transfer_id=`), `?redirect=`, or
a repeated or invalid parameter. Reads change nothing, so a request tried here first and
then routed is harmless.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from filesvc.auth.dependencies import bearer_token, user_for_token
from filesvc.deps import AppContext
from filesvc.files.dependencies import check_readable
from filesvc.files.downloads import file_response
from filesvc.files.models import File
from filesvc.files.schemas import FileRead
from filesvc.middleware import DIRECTION_STATE
from filesvc.sharing.router import SHARED_RESPONSE_HEADERS, shared_file

PREFIXES = ("/api/v1/files/", "/api/v1/shared/")
# An id (never holding a slash), then nothing (metadata) or `/content`.
_FILE_PATH = re.compile(r"/api/v1/files/([^/]+)(/content)?")
_SHARED_PATH = re.compile(r"/api/v1/shared/([^/]+)")
_DISPOSITIONS = frozenset({"attachment", "inline"})
# Download query parameters that need the route: tracking and redirects.
_ROUTED = frozenset({"transfer_id", "redirect"})


class HotReads:
    """Pure ASGI, inside the request-context and CORS layers (ids, logs, metrics and CORS
    headers stay as for any request); `scope["route"]` is set to the route it stands in
    for, so metrics label the request by that route's template."""

    def __init__(
        self,
        app: ASGIApp,
        metadata_route: BaseRoute,
        content_route: BaseRoute,
        shared_route: BaseRoute,
    ) -> None:
        self.app = app
        self._metadata_route = metadata_route
        self._content_route = content_route
        self._shared_route = shared_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            response = await self._answer(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope) -> Response | None:
        if (match := _FILE_PATH.fullmatch(scope["path"])) is not None:
            if match.group(2) is None:
                return await self._metadata(scope, match.group(1))
            return await self._content(scope, match.group(1))
        if (match := _SHARED_PATH.fullmatch(scope["path"])) is not None:
            return await self._shared(scope, match.group(1))
        return None

    async def _metadata(self, scope: Scope, file_id: str) -> Response | None:
        # The route takes the header's token only, and no query parameter.
        if scope["method"] != "GET":
            return None
        token = bearer_token(Headers(scope=scope).get("authorization"))
        context: AppContext = scope["app"].state.context
        try:
            user = await user_for_token(token, context) if token else None
            file = check_readable(await context.db.point_reads.get(File, file_id), user)
        except Exception:
            return None  # the route does it again and answers the error, as it always has
        scope["route"] = self._metadata_route
        return Response(FileRead.of(file).model_dump_json(), media_type="application/json")

    async def _content(self, scope: Scope, file_id: str) -> Response | None:
        download = _download(scope)
        if download is None:
            return None
        headers, query = download
        token = bearer_token(headers.get("authorization")) or query.get("access_token")
        context: AppContext = scope["app"].state.context
        try:
            user = await user_for_token(token, context) if token else None
            file = check_readable(await context.db.point_reads.get(File, file_id), user)
            response = await _small_file_response(scope, context, file, query)
        except Exception:
            return None  # as above
        return self._downloading(scope, self._content_route, response)

    async def _shared(self, scope: Scope, token: str) -> Response | None:
        download = _download(scope)
        if download is None:
            return None
        context: AppContext = scope["app"].state.context
        try:
            file = await shared_file(token, context)
            response = await _small_file_response(scope, context, file, download[1])
        except Exception:
            return None  # as above
        if response is not None:
            response.headers.update(SHARED_RESPONSE_HEADERS)
        return self._downloading(scope, self._shared_route, response)

    @staticmethod
    def _downloading(scope: Scope, route: BaseRoute, response: Response | None) -> Response | None:
        if response is not None:
            scope["route"] = route
            scope.setdefault("state", {})[DIRECTION_STATE] = "download"
        return response


def _download(scope: Scope) -> tuple[Headers, dict[str, str]] | None:
    """A download's headers and query, if it is one answered here: GET or HEAD, no range,
    not tracked, and a query understood as the routes read it."""
    if scope["method"] not in ("GET", "HEAD"):
        return None
    headers = Headers(scope=scope)
    if "range" in headers or "x-transfer-id" in headers:
        return None
    query = _download_query(scope["query_string"])
    return None if query is None else (headers, query)


def _download_query(query_string: bytes) -> dict[str, str] | None:
    """`access_token` and `disposition`, as the routes read them; None where the route must
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


async def _small_file_response(
    scope: Scope, context: AppContext, file: File, query: dict[str, str]
) -> Response | None:
    """The file's whole body (or a 304), if small: None for a bigger file."""
    if file.size > context.small_blobs.max_item_bytes:
        return None
    disposition = query.get("disposition", "attachment")
    response = await file_response(
        context.storage, context.small_blobs, file, Request(scope), disposition
    )
    # Only bodies already in hand: a streamed one can still fail once sent, and only the
    # route's handlers turn that into the right answer.
    return response if type(response) is Response else None
