"""The HTTP contract under a fuzzer: Schemathesis runs every check in every phase
(examples, coverage, fuzzing, stateful) against a real server, on SQLite + local disk and
on PostgreSQL + S3, once as an admin and once as a viewer, and finds nothing: no check
fails and no answer is a 5xx (its `not_a_server_error` check; the `server` fixture also
fails on any traceback the server logs).

The event streams are left out: they stream until the client leaves, so every generated
request would wait out its timeout. tests/events and the e2e transfer tests cover them.
The seed is fixed so a CI run is repeatable; FILESVC_FUZZ_SEED picks another.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import on_both_stacks
from .server import RunningServer, create_user

pytestmark = pytest.mark.e2e
server_process = on_both_stacks()

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 10
SEED = os.environ.get("FILESVC_FUZZ_SEED", "20261130")
RUN_DEADLINE = 540


@pytest.fixture(scope="module")
def tokens(server_process: RunningServer) -> dict[str, str]:
    """An account of each role, made before any fuzzing: an admin's run may well change
    any user's password or role (the server's own admin's too) and so revoke tokens. The
    viewer runs first for that reason."""
    return {role: create_user(server_process, role).token for role in ("viewer", "admin")}


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_schemathesis_finds_nothing(
    server: RunningServer, tokens: dict[str, str], role: str, tmp_path: Path
) -> None:
    token = tokens[role]
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        server.url("/openapi.json"),
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        # One worker: Hypothesis parses lambdas' source with ast, which CPython 3.11 can
        # fail to do from two threads at once ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--exclude-path-regex",
        "/events$",
        "--header",
        f"Authorization: Bearer {token}",
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_DEADLINE, cwd=tmp_path, check=False
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts is not None, report[-5_000:]
    assert counts[1] == counts[2], counts[0]
    assert int(counts[1]) > 100, counts[0]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}\b", report), f"{phase} did not pass:\n{report[-5_000:]}"
