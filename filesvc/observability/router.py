"""GET /metrics: Prometheus text. Open, unless FILESVC_METRICS_TOKEN is set: then only a
scraper sending it as a bearer token may read it."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response

from filesvc.errors import NotAuthenticated, error_responses
from filesvc.observability.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["operations"])


def _authorized(request: Request, token: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and secrets.compare_digest(
        credentials.strip().encode(), token.encode()
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
    summary="Prometheus metrics (a bearer token when FILESVC_METRICS_TOKEN is set)",
)
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None and not _authorized(request, token.get_secret_value()):
        raise NotAuthenticated("This endpoint needs the metrics token.")
    registry: Metrics = request.app.state.metrics
    return Response(await registry.render(), media_type=CONTENT_TYPE_LATEST)
