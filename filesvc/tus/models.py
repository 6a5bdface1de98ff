"""One row per unfinished tus upload: how far it got, where its bytes are, who holds it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from filesvc.db import Base, IdColumn, TimestampMixin, UTCDateTime


class TusUpload(TimestampMixin, Base):
    __tablename__ = "tus_uploads"

    # Also the upload's transfer id and the first part of its storage keys.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(IdColumn, ForeignKey("users.id"), index=True)
    length: Mapped[int | None] = mapped_column(BigInteger)  # None: Upload-Defer-Length
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # The decoded Upload-Metadata pairs (values None for keys sent without one).
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Where the bytes so far are: the backend's own state (tus/local.py, tus/s3.py).
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    storage_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The lease of the one PATCH that may write now (tus/lease.py).
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
