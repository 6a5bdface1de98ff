from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from filesvc.db import Base, IdColumn, TimestampMixin, new_id


class Visibility(StrEnum):
    private = "private"
    internal = "internal"
    public = "public"


class File(TimestampMixin, Base):
    __tablename__ = "files"
    __table_args__ = (
        # Keyset pagination walks (sort key, id) for each sort order.
        Index("ix_files_created_at_id", "created_at", "id"),
        Index("ix_files_name_id", "name", "id"),
        Index("ix_files_size_id", "size", "id"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    visibility: Mapped[Visibility] = mapped_column(
        Enum(
            Visibility, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=Visibility.private,
    )
    owner_id: Mapped[str] = mapped_column(IdColumn, ForeignKey("users.id"), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # Server-generated; client names never reach storage.
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
