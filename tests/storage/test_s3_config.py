"""The botocore configuration the S3 backend builds: no store is needed for these."""

from __future__ import annotations

import pytest

from filesvc.storage.s3_client import S3Options, build_client


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # build_client resolves credentials the standard way; any will do, nothing is sent.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_max_attempts_counts_the_first_try(attempts: int) -> None:
    options = S3Options(
        bucket="b", endpoint_url="http://x", region="us-east-1", max_attempts=attempts
    )
    client = build_client(options)
    try:
        assert client.meta.config.retries == {"total_max_attempts": attempts, "mode": "standard"}
    finally:
        client.close()
