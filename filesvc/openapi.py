"""The OpenAPI document, with what FastAPI cannot say from the signatures alone."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from starlette.routing import Match

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
_PARAMETER = re.compile(r"\\\{[^/]*?\\\}")


# Marks a parameter whose value its route checks itself (see `exactly`).
_EXACTLY = "x-exactly"


def exactly(value: str) -> dict[str, Any]:
    """`json_schema_extra` for a parameter that must be `value`, checked by its route with
    its own status (tus' 412, not FastAPI's 422): the document says required, this value."""
    return {_EXACTLY: value}


def _require_checked_parameters(schema: dict[str, Any]) -> None:
    """Parameters checked by their route are required, though FastAPI sees a default: a
    list with `minItems` (a 400, see archive/router.py) and one marked with `exactly`."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                value_schema = parameter.get("schema", {})
                if _EXACTLY in value_schema:
                    parameter["required"] = True
                    parameter["schema"] = {"type": "string", "enum": [value_schema[_EXACTLY]]}
                elif value_schema.get("minItems", 0) > 0:
                    parameter["required"] = True


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _require_checked_parameters(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _templates_matching(schema: dict[str, Any], path: str) -> list[str]:
    """The document's path templates that match `path`, concrete before templated (as
    OpenAPI matches them: `/users/me` before `/users/{user_id}`)."""
    found = [
        template
        for template in schema.get("paths", {})
        if re.fullmatch(_PARAMETER.sub("[^/]+", re.escape(template)), path)
    ]
    return sorted(found, key=lambda template: template.count("{"))


def allowed_methods(request: Request) -> str:
    """The `Allow` of a 405: every method a route serves at this path (Starlette's own
    names only the first route's, where several routes share a path), narrowed to the
    operations of the path's own template where two templates overlap."""
    app: FastAPI = request.app
    routes = app.router.routes
    served = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    templates = _templates_matching(app.openapi(), request.url.path)
    if templates:
        documented = {method.upper() for method in app.openapi()["paths"][templates[0]]}
        served = [method for method in served if method in documented]
    return ", ".join(served)
