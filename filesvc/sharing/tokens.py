"""Share-link tokens: a signed, expiring grant to download one file's current content.

A token is `base64url(json claims).base64url(HMAC-SHA256)`. The HMAC key is derived from
the secret key for this purpose only, so an access token can never pass for a share token
or the other way round. Both halves must be canonical base64url: a decoder that ignores
the spare bits of the last character would otherwise accept a changed character.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from filesvc.sharing.errors import InvalidLink, LinkExpired

DOWNLOAD = "download"
# 128 bits of the content's SHA-256: replacing the content voids older links.
PINNED_HEX_CHARS = 32
_KEY_PURPOSE = b"filesvc share-link v1"


@dataclass(frozen=True, slots=True)
class ShareGrant:
    file_id: str
    action: str
    sha256_prefix: str
    creator_id: str
    expires_at: int  # Unix seconds

    def pins(self, sha256: str) -> bool:
        return hmac.compare_digest(self.sha256_prefix, sha256[:PINNED_HEX_CHARS])


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink() from None
    if _encode(data) != text:
        raise InvalidLink()
    return data


def _signature(secret: str, payload: str) -> bytes:
    return hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()


def sign_grant(grant: ShareGrant, secret: str) -> str:
    claims = {
        "f": grant.file_id,
        "a": grant.action,
        "h": grant.sha256_prefix,
        "u": grant.creator_id,
        "e": grant.expires_at,
    }
    payload = _encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_encode(_signature(secret, payload))}"


def verify_grant(token: str, secret: str, now: float) -> ShareGrant:
    """The grant a token carries; InvalidLink if it was not signed by us, LinkExpired after."""
    if not token.isascii() or token.count(".") != 1:
        raise InvalidLink()
    payload, signature = token.split(".")
    if not hmac.compare_digest(_decode(signature), _signature(secret, payload)):
        raise InvalidLink()
    # Signed by us, so well-formed; checked anyway, as a key leak must not become a crash.
    try:
        claims = json.loads(_decode(payload))
        grant = ShareGrant(
            file_id=claims["f"],
            action=claims["a"],
            sha256_prefix=claims["h"],
            creator_id=claims["u"],
            expires_at=claims["e"],
        )
    except (ValueError, KeyError, TypeError):
        raise InvalidLink() from None
    if not all(isinstance(v, str) for v in (grant.file_id, grant.sha256_prefix, grant.creator_id)):
        raise InvalidLink()
    if type(grant.expires_at) is not int:
        raise InvalidLink()
    if now >= grant.expires_at:
        raise LinkExpired()
    return grant
