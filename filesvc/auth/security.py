"""Password hashing (Argon2) and access tokens (JWT, HS256 only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ALGORITHM = "HS256"
# OWASP's Argon2id baseline (19 MiB, 2 passes, 1 lane): each hash holds its memory while it
# runs, so the library default of 64 MiB would dominate a small server's footprint.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# At most two hashes at once: a burst of logins queues instead of eating memory.
# (An executor, unlike an asyncio.Semaphore, is not tied to one event loop.)
_hashing_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


@cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so a login costs the same either way.
    Made on first need (in the hashing thread), not at import."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    ok: bool
    new_hash: str | None = None  # set when the stored hash uses outdated parameters


def _verify(password_hash: str | None, password: str) -> PasswordCheck:
    try:
        _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(ok=False)
    if password_hash is None:
        return PasswordCheck(ok=False)
    if _hasher.check_needs_rehash(password_hash):
        return PasswordCheck(ok=True, new_hash=_hasher.hash(password))
    return PasswordCheck(ok=True)


async def verify_password(password_hash: str | None, password: str) -> PasswordCheck:
    # Argon2 is deliberately slow: keep it off the event loop.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hashing_pool, _verify, password_hash, password)


async def hash_password(password: str) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hashing_pool, _hasher.hash, password)


@dataclass(frozen=True, slots=True)
class TokenSubject:
    user_id: str
    # The user's token version when the token was issued; a password change bumps it,
    # so older tokens stop working at once.
    version: int


def create_access_token(subject: TokenSubject, secret: str, ttl_seconds: int) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": subject.user_id,
        "ver": subject.version,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens already verified, with their expiry: clients send the same token with every
# request, and checking its signature and claims costs more than the rest of a small one.
# Keyed by secret and token, so only the exact bytes that were verified match.
_verified: dict[tuple[str, str], tuple[TokenSubject, float]] = {}
MAX_VERIFIED_TOKENS = 10_000


def decode_access_token(token: str, secret: str) -> TokenSubject | None:
    """Who a valid, unexpired token names, else None."""
    known = _verified.get((secret, token))
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[(secret, token)]
    decoded = _decode_access_token(token, secret)
    if decoded is None:
        return None
    if len(_verified) >= MAX_VERIFIED_TOKENS:
        _verified.clear()
    _verified[(secret, token)] = decoded
    return decoded[0]


def _decode_access_token(token: str, secret: str) -> tuple[TokenSubject, float] | None:
    """The subject of a valid, unexpired token, and when it expires (seconds since the epoch)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "sub", "ver"]}
        )
    except jwt.PyJWTError:
        return None
    subject, version, expires = claims.get("sub"), claims.get("ver"), claims.get("exp")
    if not isinstance(subject, str) or type(version) is not int:
        return None
    if not isinstance(expires, int | float):
        return None
    return TokenSubject(subject, version), float(expires)


def load_or_create_secret_key(data_dir: Path) -> str:
    """The signing key kept in the data dir, created on first start (mode 0600)."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".secret_key.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        # link() is create-only: when workers start together, the first key wins
        # and nobody ever reads a half-written file.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable key; delete it to make a new one")
    return key
