"""JavaScript clients for the e2e suite, installed from npm once into the test cache.

Like Swagger UI for the /docs test (browser.py): `npm install` into the virtualenv's
`node/` directory (git-ignored), on first use, with scripts disabled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .browser import NPM_TIMEOUT, missing_prerequisite, node_cache_dir

TUS_JS_CLIENT = ("tus-js-client", "4.3.1")
UPPY = ("uppy", "4.18.3")


def _installed(package: Path, version: str) -> bool:
    try:
        return bool(json.loads((package / "package.json").read_text())["version"] == version)
    except (OSError, ValueError, KeyError):
        return False


def npm_package(name: str, version: str) -> Path:
    """The package's directory under node_modules, installed with npm if it is missing."""
    prefix = node_cache_dir()
    package = prefix / "node_modules" / name
    if _installed(package, version):
        return package
    npm = shutil.which("npm")
    if npm is None:
        missing_prerequisite(f"npm is not on PATH; it installs {name}@{version} for these tests")
    command = [
        npm, "install", "--prefix", str(prefix),
        "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
        f"{name}@{version}",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        missing_prerequisite(f"`{' '.join(command)}` took over {NPM_TIMEOUT:.0f}s")
    if result.returncode != 0 or not _installed(package, version):
        missing_prerequisite(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
            + (result.stderr or result.stdout)[-2000:]
        )
    return package


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        missing_prerequisite("node is not on PATH; it runs tus-js-client")
    return node
