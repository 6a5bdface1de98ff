"""Every ORM model, imported in one place so Alembic and the app see the whole schema."""

from filesvc.db import Base
from filesvc.events.models import FileEvent
from filesvc.files.models import File
from filesvc.tus.models import TusUpload
from filesvc.users.models import User

__all__ = ["Base", "File", "FileEvent", "TusUpload", "User"]
