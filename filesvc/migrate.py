"""Run Alembic migrations from code (`filesvc migrate`, tests) without an alembic.ini."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def _run(step: Callable[[Config, str], None], database_url: str, revision: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        step(alembic_config(database_url), revision)
        return
    # env.py calls asyncio.run(), which cannot nest in a running loop: use a thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(step, alembic_config(database_url), revision).result()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema; callable with or without a running event loop."""
    _run(command.upgrade, database_url, revision)


def downgrade(database_url: str, revision: str) -> None:
    _run(command.downgrade, database_url, revision)
