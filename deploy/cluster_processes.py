"""The processes of deploy/local-cluster: SeaweedFS, the filesvc instances and nginx, each
detached in its own session and working directory, and how they are stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgresql+asyncpg://127.0.0.1:5432/filesvc_cluster"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BUCKET = "filesvc"
REGION = "us-east-1"
START_DEADLINE = 60.0
STOP_DEADLINE = 20.0
WEED_STOP_DEADLINE = 3.0
WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "metricsPort",
)


class ClusterError(RuntimeError):
    """Something the user must fix (a service missing, a process that did not start)."""


@dataclass
class Proc:
    name: str
    pid: int
    cwd: str
    port: int = 0


@dataclass
class State:
    port: int
    instances: int
    workers: int
    procs: list[Proc] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        raw: dict[str, Any] = json.loads(path.read_text())
        procs = [Proc(**p) for p in raw.pop("procs")]
        return cls(**raw, procs=procs)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


# --- small helpers ---------------------------------------------------------------------


def log(message: str) -> None:
    print(f"local-cluster: {message}", flush=True)


def cluster_dir() -> Path:
    return Path(os.environ.get("FILESVC_CLUSTER_DIR", "./cluster")).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def binary(name: str) -> str:
    """`name` beside this Python (the venv's bin) first, then on PATH (and /usr/sbin)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        hint = "`apt-get install nginx`" if name == "nginx" else "`make install`"
        raise ClusterError(f"{name} not found: {hint}")
    return found


def secret_file(path: Path, make: str) -> str:
    """The secret kept in `path` (mode 0600), written with `make` the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make + "\n")
    return path.read_text().strip()


def is_ours(proc: Proc) -> bool:
    """The pid is alive and still the process started in `proc.cwd` (not a reused pid)."""
    try:
        return os.readlink(f"/proc/{proc.pid}/cwd") == proc.cwd
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_for(check: Any, what: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        if check():
            return
        time.sleep(0.1)
    raise ClusterError(f"{what} not ready within {START_DEADLINE:.0f}s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    args: list[str], cwd: Path, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """A detached child (own session, so `down` can stop it and its workers as a group)."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- the services given from outside -----------------------------------------------------


async def _ensure_database(url: str) -> None:
    import asyncpg

    dsn = re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = dsn.partition("?")[0].rpartition("/")
        admin = await asyncpg.connect(base + "/postgres", timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        log(f"created database {name}")
        return
    await connection.close()


def check_services(database_url: str, redis_url: str) -> None:
    if database_url.startswith("postgresql"):
        try:
            asyncio.run(_ensure_database(database_url))
        except (OSError, Exception) as exc:
            raise ClusterError(f"PostgreSQL (FILESVC_DATABASE_URL) is not usable: {exc}") from None
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ClusterError(f"Redis (FILESVC_REDIS_URL) is not usable: {exc}") from None
    finally:
        client.close()


# --- the processes this script starts ---------------------------------------------------


def start_weed(root: Path, access_key: str, secret_key: str) -> tuple[Proc, str]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    weed_dir = root / "weed"
    (weed_dir / "data").mkdir(parents=True, exist_ok=True)
    config = weed_dir / "s3.json"
    identity = {
        "name": "filesvc",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"identities": [identity]}, f)
    ports = dict(zip(WEED_PORTS, (free_port() for _ in WEED_PORTS), strict=True))
    args = [
        binary("weed"),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={weed_dir / 'data'}",
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=512",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log_path = weed_dir / "weed.log"
    process = spawn(args, weed_dir, dict(os.environ), log_path)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def bucket_ready() -> bool:
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key=".probe", Body=b"x")
            client.delete_object(Bucket=BUCKET, Key=".probe")
            return True
        except (BotoCoreError, ClientError):
            return False

    proc = Proc("weed", process.pid, str(weed_dir), ports["s3.port"])
    try:
        wait_for(bucket_ready, "SeaweedFS", process, log_path)
    except ClusterError:
        stop(proc)
        raise
    return proc, endpoint


def migrate(env: dict[str, str], root: Path) -> None:
    """Once, before the instances start together (they then skip their own migration)."""
    done = subprocess.run(
        [binary("filesvc"), "migrate"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"filesvc migrate failed:\n{done.stdout}{done.stderr}")


def start_instance(n: int, root: Path, env: dict[str, str], workers: int) -> tuple[Proc, Any]:
    directory = root / f"instance-{n}"
    directory.mkdir(exist_ok=True)
    port = free_port()
    args = [binary("filesvc"), "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--workers", str(workers)]
    env = {**env, "FILESVC_DATA_DIR": str(directory / "data"), "PYTHONUNBUFFERED": "1"}
    log_path = directory / "filesvc.log"
    process = spawn(args, directory, env, log_path)
    return Proc(f"filesvc-{n}", process.pid, str(directory), port), (process, log_path)


def stop(proc: Proc) -> None:
    """SIGTERM to its process group (workers included), SIGKILL after a deadline. weed
    lingers ~15 s on SIGTERM; it goes last, when nothing writes to it any more, so it
    only gets a few seconds."""
    if not is_ours(proc):
        return
    patience = WEED_STOP_DEADLINE if proc.name == "weed" else STOP_DEADLINE
    if _signal_and_wait(proc, signal.SIGTERM, patience):
        return
    if proc.name != "weed":
        log(f"{proc.name} (pid {proc.pid}) ignored SIGTERM: SIGKILL")
    if not _signal_and_wait(proc, signal.SIGKILL, STOP_DEADLINE):
        raise ClusterError(f"{proc.name} (pid {proc.pid}) still runs after SIGKILL")


def _signal_and_wait(proc: Proc, signum: int, timeout: float) -> bool:
    """Signal the process group; True once the process is gone within `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)  # reap it if it is our child (tests, `up`)
        if not is_ours(proc):
            return True
        time.sleep(0.1)
    return False
