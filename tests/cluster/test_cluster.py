"""Scale-out, proven on `deploy/local-cluster`: round robin through nginx, no stickiness.

Read-after-write across instances, live progress and file events whichever instance a
stream and an upload land on, and an instance (or a worker) killed with SIGKILL while
uploads are in flight. The SIGKILL test goes last: it leaves the cluster one short.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import LocalFile, MiB, make_random_file, wait_for
from tests.e2e.watch import Watcher
from tests.e2e.wire import CurlResult, bearer, run_curl
from tests.transfers.sse import parse_events

from .conftest import Cluster, run_local_cluster

pytestmark = pytest.mark.e2e

UPLOADS = 100
TRANSFER_BYTES = 200 * MiB
CURL_RATE = "100M"  # as in tests/e2e/test_transfer_events.py: progress has time to show


def request_id() -> str:
    return uuid.uuid4().hex


def upload_and_read_back(cluster: Cluster, client: httpx.Client, n: int) -> tuple[str, str]:
    """PUT a random body, GET it straight back through nginx: (PUT's, GET's) request ids."""
    data = os.urandom(1024 + n * 97)
    put_id, get_id = request_id(), request_id()
    put = client.put(
        f"/api/v1/files/raw/raw-{n}.bin", content=data, headers={"X-Request-ID": put_id}
    )
    assert put.status_code == 201, put.text
    assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()
    got = client.get(put.json()["content_url"], headers={"X-Request-ID": get_id})
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    return put_id, get_id


def test_every_upload_reads_back_at_once_through_nginx(cluster: Cluster) -> None:
    with cluster.client() as client, ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(lambda n: upload_and_read_back(cluster, client, n), range(UPLOADS)))
    if cluster.topology.instances > 1:
        # Round robin: reads landed on the other instance than their write, again and again.
        crossed = sum(cluster.upstream_of(p) != cluster.upstream_of(g) for p, g in pairs)
        assert crossed >= UPLOADS // 4, crossed
        served = {cluster.upstream_of(i) for pair in pairs for i in pair}
        assert served == {f"127.0.0.1:{port}" for port in cluster.instance_ports()}


@pytest.fixture(scope="module")
def transfer_file(tmp_path_factory: pytest.TempPathFactory) -> LocalFile:
    return make_random_file(tmp_path_factory.mktemp("transfer") / "t.bin", TRANSFER_BYTES)


def test_progress_arrives_before_the_answer_whichever_instance(
    cluster: Cluster, curl: str, transfer_file: LocalFile, tmp_path: Path
) -> None:
    transfer_id = f"cluster-{uuid.uuid4().hex}"
    url = cluster.url(f"/api/v1/transfers/{transfer_id}/events")
    # Two watchers in a row: round robin puts them on both instances, so one watches
    # from the instance the upload is on and one from the other.
    watch_ids = [request_id(), request_id()]
    watchers = [
        Watcher(url, cluster.admin_token, headers={"X-Request-ID": i}).start() for i in watch_ids
    ]
    put_id = request_id()
    result = run_curl(
        curl,
        tmp_path,
        "--limit-rate", CURL_RATE,
        "-H", bearer(cluster.admin_token),
        "-H", f"X-Transfer-Id: {transfer_id}",
        "-H", f"X-Request-ID: {put_id}",
        "-T", str(transfer_file.path),
        cluster.url("/api/v1/files/raw/big.bin"),
    )  # fmt: skip
    answered = time.monotonic()
    assert result.status == 201, result.body[:2000]
    assert result.json()["sha256"] == transfer_file.sha256
    for watching in watchers:
        events = watching.join()
        receiving = [
            a
            for a in watching.arrivals
            if a.event.event == "progress"
            and a.event.data["state"] == "receiving"
            and 0 < a.event.data["bytes"] < TRANSFER_BYTES
            and a.at < answered
        ]
        assert len(receiving) >= 5, [a.event.data for a in watching.arrivals]
        assert events[-1].event == "complete"
        assert events[-1].data["file"] == result.json()
    if cluster.topology.instances > 1:
        upload_on = cluster.upstream_of(put_id)
        watched_on = {cluster.upstream_of(i) for i in watch_ids}
        assert len(watched_on) == 2, watched_on
        assert upload_on in watched_on


class FeedReader:
    """Reads /api/v1/events in a thread until every name in `names` has been created."""

    def __init__(self, cluster: Cluster, names: set[str], request_id: str) -> None:
        self.cluster, self.names, self.request_id = cluster, names, request_id
        self.created: dict[str, str] = {}  # name -> id
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FeedReader:
        self.thread.start()
        assert self.opened.wait(10), "the event stream did not open"
        return self

    def _run(self) -> None:
        headers = {**self.cluster.client().headers, "X-Request-ID": self.request_id}
        try:
            with httpx.stream(
                "GET", self.cluster.url("/api/v1/events"), headers=headers, timeout=30
            ) as response:
                assert response.status_code == 200
                for event in parse_events(response.iter_lines()):
                    self.opened.set()  # the first block (`retry:`): subscribed
                    if event.event == "file.created" and event.data["name"] in self.names:
                        self.created[event.data["name"]] = event.data["id"]
                    if self.created.keys() == self.names:
                        return
        except BaseException as exc:
            self.error = exc
        finally:
            self.opened.set()

    def join(self) -> dict[str, str]:
        self.thread.join(20)
        assert not self.thread.is_alive(), f"seen only {sorted(self.created)}"
        assert self.error is None, self.error
        return self.created


def test_the_event_feed_sees_files_created_through_every_instance(cluster: Cluster) -> None:
    names = {f"feed-{uuid.uuid4().hex[:8]}-{n}.txt" for n in range(6)}
    feed = FeedReader(cluster, names, request_id()).start()
    created: dict[str, str] = {}
    put_ids = []
    with cluster.client() as client:
        for name in sorted(names):
            put_ids.append(request_id())
            response = client.put(
                f"/api/v1/files/raw/{name}",
                content=name.encode(),
                headers={"X-Request-ID": put_ids[-1]},
            )
            assert response.status_code == 201, response.text
            created[name] = response.json()["id"]
    assert feed.join() == created
    if cluster.topology.instances > 1:
        assert {cluster.upstream_of(i) for i in put_ids} == {
            f"127.0.0.1:{port}" for port in cluster.instance_ports()
        }


# --- SIGKILL mid-traffic (last: the cluster stays one instance or worker short) ---------

SLOW_UPLOADS = 4
SLOW_BYTES = 16 * MiB
SLOW_RATE = "3M"  # about five seconds each: still in flight when the kill comes


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing spawns) under the `filesvc serve` pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def exited(pid: int) -> bool:
    """Gone, or a zombie: either way its sockets are closed."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def kill_one(cluster: Cluster) -> tuple[int, str | None]:
    """SIGKILL the second instance, or with one instance one of its workers: (pid, address).
    Returns once it has exited: a request sent in that instant may still go out on one of
    nginx's kept-alive connections to it, and a body already streamed cannot be resent."""
    instances = cluster.procs("filesvc-")
    if len(instances) > 1:
        victim = instances[-1]
        pid, address = victim["pid"], f"127.0.0.1:{victim['port']}"
    else:
        workers = worker_pids(instances[0]["pid"])
        assert len(workers) == cluster.topology.workers, workers
        pid, address = workers[0], None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: exited(pid), timeout=10, what=f"the killed process {pid} to exit")
    return pid, address


def all_files(client: httpx.Client) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 1000}
    while True:
        page = client.get("/api/v1/files", params=params)
        assert page.status_code == 200, page.text
        files += page.json()["items"]
        if page.json()["next_cursor"] is None:
            return files
        params["cursor"] = page.json()["next_cursor"]


def assert_every_row_has_its_bytes(client: httpx.Client) -> list[dict[str, Any]]:
    """Nothing half-visible: every listed file downloads whole, with its own hash."""
    files = all_files(client)
    for file in files:
        digest = hashlib.sha256()
        size = 0
        with client.stream("GET", file["content_url"]) as response:
            assert response.status_code == 200, (file, response.status_code)
            for chunk in response.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
        assert (size, digest.hexdigest()) == (file["size"], file["sha256"]), file
    return files


def test_an_instance_killed_mid_traffic(cluster: Cluster, curl: str, tmp_path: Path) -> None:
    slow = make_random_file(tmp_path / "slow.bin", SLOW_BYTES)
    pending_before = set(cluster.pending_uploads())
    put_ids = [request_id() for _ in range(SLOW_UPLOADS)]

    def slow_upload(n: int) -> CurlResult:
        return run_curl(
            curl,
            tmp_path / f"slow-{n}",
            "--limit-rate", SLOW_RATE,
            "-H", bearer(cluster.admin_token),
            "-H", f"X-Request-ID: {put_ids[n]}",
            "-T", str(slow.path),
            cluster.url(f"/api/v1/files/raw/slow-{n}.bin"),
        )  # fmt: skip

    with ThreadPoolExecutor(SLOW_UPLOADS) as pool:
        running = [pool.submit(slow_upload, n) for n in range(SLOW_UPLOADS)]
        # In flight everywhere: each upload has begun its multipart upload on S3.
        wait_for(
            lambda: len(set(cluster.pending_uploads()) - pending_before) >= SLOW_UPLOADS,
            timeout=30,
            what="every slow upload to be streaming into S3",
        )
        killed_pid, killed_address = kill_one(cluster)

        # The next requests succeed, on what is left (nginx skips the dead instance).
        with cluster.client() as client:
            for n in range(10):
                upload_and_read_back(cluster, client, 1000 + n)
            posted = client.post("/api/v1/files", files={"file": ("after.txt", b"after kill")})
            assert posted.status_code == 201, posted.text
        results = [future.result() for future in running]

    for put_id, result in zip(put_ids, results, strict=True):
        if result.status == 201:
            assert result.json()["sha256"] == slow.sha256
            assert killed_address is None or cluster.upstream_of(put_id) != killed_address
        else:
            # Failed cleanly: nginx's JSON 503 (the instance vanished under it), or the
            # connection cut before an answer; never a success that was not one.
            assert result.status in {0, 502, 503}, (result.status, result.body[:500])
            if result.status:
                assert result.json()["code"] == "unavailable"
    failed = [r for r in results if r.status != 201]
    if killed_address is not None:
        on_victim = [i for i in put_ids if cluster.upstream_of(i) == killed_address]
        assert on_victim, "round robin put no slow upload on the killed instance"
        assert len(failed) == len(on_victim), [r.status for r in results]
        status = run_local_cluster("status", cluster.env)
        assert status.returncode == 1
        assert "filesvc-2   pid" in status.stdout
        assert "NOT RUNNING" in status.stdout
    else:
        # uvicorn replaces the worker; the instance never stopped answering.
        parent = cluster.procs("filesvc-")[0]["pid"]
        wait_for(
            lambda: (
                len([p for p in worker_pids(parent) if p != killed_pid]) == cluster.topology.workers
            ),
            timeout=30,
            what="uvicorn to replace the killed worker",
        )
    with cluster.client() as client:
        files = assert_every_row_has_its_bytes(client)
    stored = {f["name"] for f in files}
    for n, result in enumerate(results):
        if result.status == 201:
            assert f"slow-{n}.bin" in stored
