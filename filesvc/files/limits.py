"""What one upload may be: its size, the owner's remaining quota and the allowed types."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from filesvc.config import Settings
from filesvc.files.errors import ContentTypeNotAllowed, QuotaExceeded, UploadTooLarge


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int
    quota_left: int | None = None  # None: no quota configured
    allowed_types: tuple[str, ...] = ()  # empty: every type

    @classmethod
    def for_owner(cls, settings: Settings, used_bytes: int) -> UploadLimits:
        quota = settings.user_quota_bytes
        return cls(
            max_bytes=settings.max_upload_bytes,
            quota_left=None if quota is None else max(quota - used_bytes, 0),
            allowed_types=tuple(t.lower() for t in settings.allowed_content_types),
        )

    def check_size(self, total: int) -> None:
        if total > self.max_bytes:
            raise UploadTooLarge(self.max_bytes)
        if self.quota_left is not None and total > self.quota_left:
            raise QuotaExceeded()

    def check_type(self, content_type: str) -> None:
        # Patterns like `image/*`; fnmatchcase so that matching ignores the platform.
        if self.allowed_types and not any(
            fnmatch.fnmatchcase(content_type.lower(), pattern) for pattern in self.allowed_types
        ):
            raise ContentTypeNotAllowed(content_type)


class ByteBudget:
    """Counts file bytes across one request and stops it at the first limit crossed."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, amount: int) -> None:
        self.used += amount
        self.limits.check_size(self.used)
