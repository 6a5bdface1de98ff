"""Sessions that write are transactions; point reads (PostgreSQL: autocommit) leave no
trace on the pooled connection they hand back."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.db import Database
from filesvc.users.models import Role, User


class Boom(Exception):
    pass


async def autocommit(session: AsyncSession) -> bool:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return bool(getattr(raw.dbapi_connection, "autocommit", False))


async def insert_then_fail(db: Database) -> None:
    async with db.session() as session:
        assert not await autocommit(session)
        session.add(User(username="ghost", password_hash="x", role=Role.viewer))
        await session.flush()  # the INSERT ran...
        raise Boom()  # ...and goes with the rollback


async def test_a_write_session_after_a_read_is_still_one_transaction(database_url: str) -> None:
    db = Database(database_url)
    try:
        for _ in range(3):  # the pool hands the read's connection to the writer
            assert await db.point_reads.get(User, "nobody") is None
            with pytest.raises(Boom):
                await insert_then_fail(db)
            async with db.session() as session:
                count = await session.scalar(select(func.count()).where(User.username == "ghost"))
                assert count == 0
    finally:
        await db.dispose()
