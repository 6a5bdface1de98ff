from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from filesvc.db import Base, IdColumn, UTCDateTime, utcnow

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
EventId = BigInteger().with_variant(Integer(), "sqlite")


class FileEvent(Base):
    """A file change, kept for a bounded window so a reconnecting `/events` client can
    replay what it missed, whichever instance it reconnects to."""

    __tablename__ = "file_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[str] = mapped_column(IdColumn)
    # Who may see it, as the file was when it changed.
    owner_id: Mapped[str] = mapped_column(IdColumn)
    visibility: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
