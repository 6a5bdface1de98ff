from __future__ import annotations

import secrets
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher

from filesvc.auth.security import (
    TokenSubject,
    create_access_token,
    decode_access_token,
    hash_password,
    load_or_create_secret_key,
    verify_password,
)

SECRET = secrets.token_urlsafe(48)  # 64 bytes: long enough for HS512 without warnings
USER_ID = "5f0e3c1a-2b4d-4c6e-8f90-123456789abc"
SUBJECT = TokenSubject(USER_ID, 7)


async def test_hash_and_verify() -> None:
    password_hash = await hash_password("correct horse пароль 😀")
    assert password_hash.startswith("$argon2id$")
    assert "correct horse" not in password_hash
    check = await verify_password(password_hash, "correct horse пароль 😀")
    assert check.ok
    assert check.new_hash is None


async def test_hashes_are_salted() -> None:
    assert await hash_password("pw") != await hash_password("pw")


async def test_wrong_password() -> None:
    password_hash = await hash_password("correct horse")
    for attempt in ["wrong", "", "correct horse ", "Correct horse"]:
        check = await verify_password(password_hash, attempt)
        assert not check.ok, attempt
        assert check.new_hash is None


async def test_no_user_is_never_ok() -> None:
    check = await verify_password(None, "anything")
    assert not check.ok
    assert check.new_hash is None


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken"])
async def test_garbage_hash_is_not_ok(stored: str) -> None:
    assert not (await verify_password(stored, "pw")).ok


async def test_weak_hash_is_upgraded() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    check = await verify_password(weak, "pw")
    assert check.ok
    assert check.new_hash is not None
    assert check.new_hash != weak
    upgraded = await verify_password(check.new_hash, "pw")
    assert upgraded.ok
    assert upgraded.new_hash is None


async def test_weak_hash_with_wrong_password_is_not_upgraded() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    check = await verify_password(weak, "nope")
    assert not check.ok
    assert check.new_hash is None


def test_token_round_trip() -> None:
    token = create_access_token(SUBJECT, SECRET, ttl_seconds=60)
    assert decode_access_token(token, SECRET) == SUBJECT


def test_token_carries_expiry() -> None:
    token = create_access_token(SUBJECT, SECRET, ttl_seconds=60)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == USER_ID
    assert 55 <= claims["exp"] - claims["iat"] <= 60


def test_expired_token() -> None:
    assert decode_access_token(create_access_token(SUBJECT, SECRET, ttl_seconds=-1), SECRET) is None


def encode(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "sub": USER_ID,
        "ver": SUBJECT.version,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_crafted_valid_token() -> None:
    assert decode_access_token(encode(claims()), SECRET) == SUBJECT


def test_crafted_expired_token() -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    token = encode(claims(iat=past - timedelta(hours=1), exp=past))
    assert decode_access_token(token, SECRET) is None


def test_wrong_secret() -> None:
    token = create_access_token(SUBJECT, secrets.token_urlsafe(48), ttl_seconds=60)
    assert decode_access_token(token, SECRET) is None


def test_a_remembered_token_is_refused_under_another_secret() -> None:
    token = create_access_token(SUBJECT, SECRET, ttl_seconds=60)
    assert decode_access_token(token, SECRET) == SUBJECT
    assert decode_access_token(token, secrets.token_urlsafe(48)) is None


def test_a_remembered_token_still_expires() -> None:
    token = create_access_token(SUBJECT, SECRET, ttl_seconds=1)
    assert decode_access_token(token, SECRET) == SUBJECT  # verified, and remembered
    deadline = time.monotonic() + 5
    while decode_access_token(token, SECRET) is not None:
        assert time.monotonic() < deadline, "a remembered token outlived its exp"
    assert jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})[
        "exp"
    ] <= (time.time())


def test_alg_none() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert decode_access_token(token, SECRET) is None


def test_alg_none_with_signature_stripped_from_real_token() -> None:
    real = create_access_token(SUBJECT, SECRET, ttl_seconds=60)
    forged = jwt.encode(claims(), None, algorithm="none")
    header = forged.split(".")[0]
    payload = real.split(".")[1]
    assert decode_access_token(f"{header}.{payload}.", SECRET) is None


def test_hs512_token_is_refused() -> None:
    assert decode_access_token(encode(claims(), algorithm="HS512"), SECRET) is None


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "ver"])
def test_missing_claim(missing: str) -> None:
    token = encode({k: v for k, v in claims().items() if k != missing})
    assert decode_access_token(token, SECRET) is None


@pytest.mark.parametrize("sub", [123, ["a"], {"id": "a"}])
def test_non_string_subject(sub: object) -> None:
    assert decode_access_token(encode(claims(sub=sub)), SECRET) is None


@pytest.mark.parametrize("ver", ["3", 3.0, True, None])
def test_version_must_be_an_integer(ver: object) -> None:
    token = encode({**claims(), "ver": ver})
    assert decode_access_token(token, SECRET) is None


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "..", "a" * 10_000])
def test_garbage_token(token: str) -> None:
    assert decode_access_token(token, SECRET) is None


def test_secret_key_is_created_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    key = load_or_create_secret_key(data_dir)
    path = data_dir / "secret_key"
    assert len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret_key(data_dir) == key
    # The temporary file used for the atomic create is gone.
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret_key"]


def test_secret_keys_differ_between_data_dirs(tmp_path: Path) -> None:
    assert load_or_create_secret_key(tmp_path / "a") != load_or_create_secret_key(tmp_path / "b")


def test_existing_key_is_kept(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(48)
    (tmp_path / "secret_key").write_text(key + "\n")
    assert load_or_create_secret_key(tmp_path) == key


@pytest.mark.parametrize("content", ["", "short", " " * 100])
def test_unusable_key_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(RuntimeError, match="no usable key"):
        load_or_create_secret_key(tmp_path)
