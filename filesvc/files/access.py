"""Who may read and who may change a file: the one place that decides.

`can_read` answers for one loaded file; `readable_by` is the same rule as SQL, for lists.
Keep the two side by side: a change to one is a change to both.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, true

from filesvc.files.models import File, Visibility
from filesvc.users.models import Role, User

# Visible to every signed-in user, whoever owns them.
SHARED_VISIBILITIES = (Visibility.internal, Visibility.public)


def can_read(user: User | None, file: File) -> bool:
    if file.visibility is Visibility.public:
        return True
    if user is None:
        return False
    return (
        file.visibility is Visibility.internal
        or file.owner_id == user.id
        or user.role is Role.admin
    )


def readable_by(user: User) -> ColumnElement[bool]:
    """`can_read` for a signed-in user, as a WHERE clause."""
    if user.role is Role.admin:
        return true()
    return or_(File.visibility.in_(SHARED_VISIBILITIES), File.owner_id == user.id)


def can_change(user: User, file: File) -> bool:
    if user.role is Role.admin:
        return True
    return user.role.at_least(Role.editor) and file.owner_id == user.id
