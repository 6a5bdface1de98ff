from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

DEFAULT_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 7 * 24 * 3600


def _whole(value: object) -> object:
    # JSON Schema's integers include 725.0; strict mode alone would refuse it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Seconds = Annotated[int, BeforeValidator(_whole)]


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in: Seconds = Field(
        default=DEFAULT_EXPIRES_IN,
        strict=True,
        description=f"Seconds until the link stops working: 1 to {MAX_EXPIRES_IN} (7 days).",
        # Documented, but checked in the route: out of range is a 400, as the contract says.
        json_schema_extra={"minimum": 1, "maximum": MAX_EXPIRES_IN},
    )


class LinkRead(BaseModel):
    url: str = Field(description="Absolute with FILESVC_PUBLIC_URL set, else a path.")
    expires_at: datetime
