"""Run Alembic migrations from code (`filesvc migrate`, tests) without an alembic.ini."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute: set_main_option would treat '%' in a password as interpolation.
    config.attributes["url"] = database_url
    return config


def _upgrade(database_url: str, revision: str) -> None:
    command.upgrade(alembic_config(database_url), revision)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema; safe to call from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(database_url, revision)
        return
    # env.py calls asyncio.run(), which cannot nest in a running loop: use a thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_upgrade, database_url, revision).result()
