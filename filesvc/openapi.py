"""The OpenAPI document, with what FastAPI cannot say from the signatures alone."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def _require_non_empty_lists(schema: dict[str, Any]) -> None:
    """A list parameter with `minItems` checked by its route (a 400, not FastAPI's 422,
    see archive/router.py) is required, though FastAPI sees a default."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("schema", {}).get("minItems", 0) > 0:
                    parameter["required"] = True


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _require_non_empty_lists(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
