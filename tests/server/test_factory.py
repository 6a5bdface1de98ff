"""`filesvc serve` builds its app with the start-up objects frozen out of the collector."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from filesvc.server.factory import create_served_app


def test_the_served_app_leaves_its_start_up_objects_to_no_collection() -> None:
    gc.unfreeze()
    try:
        app = create_served_app()
        assert isinstance(app, FastAPI)
        assert gc.get_freeze_count() > 0
        assert "/api/v1/files" in app.openapi()["paths"]
    finally:
        gc.unfreeze()  # give this test process's objects back to the collector
