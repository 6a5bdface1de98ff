"""The botocore configuration the S3 backend builds: no store is needed for these."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.config import Config

from filesvc.storage.s3_client import S3Calls, S3Options, botocore_config, build_client


def settings_of(config: Config) -> dict[str, Any]:
    # botocore keeps every option as an attribute; its type stubs declare none of them.
    return vars(config)


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
        retries = settings_of(client.meta.config)["retries"]
        assert retries == {"total_max_attempts": attempts, "mode": "standard"}
    finally:
        client.close()


def test_an_endpoint_gets_path_style_and_the_configured_limits() -> None:
    options = S3Options(
        bucket="b",
        endpoint_url="http://x",
        max_pool_connections=17,
        connect_timeout=2.5,
        read_timeout=33.0,
        max_attempts=4,
    )
    config = settings_of(botocore_config(options))
    assert config["s3"] == {"addressing_style": "path"}
    assert config["signature_version"] == "s3v4"
    assert config["request_checksum_calculation"] == "when_required"
    assert config["response_checksum_validation"] == "when_required"
    assert config["connect_timeout"] == 2.5
    assert config["read_timeout"] == 33.0
    assert config["max_pool_connections"] == 17
    assert config["retries"] == {"total_max_attempts": 4, "mode": "standard"}


def test_aws_gets_automatic_addressing_and_the_defaults() -> None:
    config = settings_of(botocore_config(S3Options(bucket="b")))
    assert config["s3"] == {"addressing_style": "auto"}
    assert config["request_checksum_calculation"] == "when_required"
    assert config["response_checksum_validation"] == "when_required"
    assert config["connect_timeout"] == 5.0
    assert config["read_timeout"] == 60.0
    assert config["max_pool_connections"] == 100
    assert config["retries"] == {"total_max_attempts": 3, "mode": "standard"}


def test_the_thread_pool_is_as_big_as_the_connection_pool() -> None:
    options = S3Options(
        bucket="b", endpoint_url="http://x", region="us-east-1", max_pool_connections=7
    )
    calls = S3Calls(build_client(options), options)
    try:
        assert settings_of(calls.client.meta.config)["max_pool_connections"] == 7
        assert calls._executor._max_workers == 7
    finally:
        calls.shutdown()
