from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

TRANSFER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Direction = Literal["upload", "download"]
State = Literal["pending", "receiving", "sending", "complete", "failed"]


def events_url(transfer_id: str) -> str:
    return f"/api/v1/transfers/{transfer_id}/events"


class TransferCreated(BaseModel):
    id: str
    events_url: str
