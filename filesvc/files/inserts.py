"""New file rows and their `file.created` events, committed in groups (group_commit.py):
the uploads that finish while one commit runs share the next one."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from filesvc.events.feed import CREATED, FileFeed
from filesvc.events.models import FileEvent
from filesvc.files.models import File
from filesvc.group_commit import GroupCommit

# Makes the rows of one upload; called again if its group is retried, so always new objects.
Build = Callable[[], list[File]]
Inserted = tuple[list[File], list[FileEvent]]
FileInserts = GroupCommit[Build, Inserted]


def file_inserts(sessionmaker: async_sessionmaker[AsyncSession], feed: FileFeed) -> FileInserts:
    async def write(session: AsyncSession, builds: list[Build]) -> list[Inserted]:
        per_upload = [build() for build in builds]
        files = [file for rows in per_upload for file in rows]
        session.add_all(files)
        events = await feed.record(session, CREATED, files)  # one event per file, in order
        inserted: list[Inserted] = []
        start = 0
        for rows in per_upload:
            inserted.append((rows, events[start : start + len(rows)]))
            start += len(rows)
        return inserted

    return GroupCommit(sessionmaker, write)
