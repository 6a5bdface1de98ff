from __future__ import annotations

import base64
import dataclasses
import json
import string

import pytest

from filesvc.sharing.errors import InvalidLink, LinkExpired
from filesvc.sharing.tokens import DOWNLOAD, ShareGrant, sign_grant, verify_grant

SECRET = "s" * 48
NOW = 1_800_000_000
GRANT = ShareGrant(
    file_id="5f0e3c1a-2b4d-4c6e-8f90-123456789abc",
    action=DOWNLOAD,
    sha256_prefix="ab" * 16,
    creator_id="0e3c1a5f-2b4d-4c6e-8f90-123456789abc",
    expires_at=NOW + 60,
)
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def test_round_trip() -> None:
    assert verify_grant(sign_grant(GRANT, SECRET), SECRET, NOW) == GRANT


def test_every_single_character_change_is_refused() -> None:
    token = sign_grant(GRANT, SECRET)
    for position, char in enumerate(token):
        for replacement in {ALPHABET[(ALPHABET.find(char) + 1) % 64], "A", "."} - {char}:
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(InvalidLink):
                verify_grant(tampered, SECRET, NOW)


def test_spare_bits_of_the_last_character_count() -> None:
    # 32 bytes of HMAC leave 2 spare bits in the last base64 character: a lenient decoder
    # reads four neighbouring characters there as the same bytes.
    token = sign_grant(GRANT, SECRET)
    index = ALPHABET.find(token[-1])
    for sibling in set(ALPHABET[index & ~3 : (index & ~3) + 4]) - {token[-1]}:
        with pytest.raises(InvalidLink):
            verify_grant(token[:-1] + sibling, SECRET, NOW)


def _with_claims(token: str, **changes: object) -> str:
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{new}.{signature}"


@pytest.mark.parametrize(
    "change", [{"f": "another-file"}, {"e": NOW + 10**6}, {"h": "cd" * 16}, {"a": "delete"}]
)
def test_changed_claims_have_no_valid_signature(change: dict[str, object]) -> None:
    with pytest.raises(InvalidLink):
        verify_grant(_with_claims(sign_grant(GRANT, SECRET), **change), SECRET, NOW)


def test_signature_of_another_link_is_refused() -> None:
    mine = sign_grant(GRANT, SECRET)
    other = sign_grant(dataclasses.replace(GRANT, file_id="another-file"), SECRET)
    swapped = mine.split(".")[0] + "." + other.split(".")[1]
    with pytest.raises(InvalidLink):
        verify_grant(swapped, SECRET, NOW)


def test_other_key_is_refused() -> None:
    with pytest.raises(InvalidLink):
        verify_grant(sign_grant(GRANT, SECRET), "t" * 48, NOW)


def test_expiry() -> None:
    token = sign_grant(GRANT, SECRET)
    assert verify_grant(token, SECRET, GRANT.expires_at - 1) == GRANT
    with pytest.raises(LinkExpired):
        verify_grant(token, SECRET, GRANT.expires_at)


def test_pins_the_content() -> None:
    assert GRANT.pins("ab" * 32)
    assert not GRANT.pins("ab" * 15 + "cd" + "ab" * 16)  # differs within the pinned half
    assert not GRANT.pins("cd" * 32)


@pytest.mark.parametrize("token", ["", ".", "a.b", "a.b.c", "é.x", "=" * 50, "a" * 5000])
def test_garbage(token: str) -> None:
    with pytest.raises(InvalidLink):
        verify_grant(token, SECRET, NOW)
