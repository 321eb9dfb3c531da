"""API keys in Redis: created once, stored only as a hash, checked on every request.

A key is `sk-` plus 256 random bits. Redis holds `inferq:key:<sha256 of the
key>` (the record: id, name, limits, allowed models, expiry, revocation) and
`inferq:keys` (public id -> digest) so operators can list and revoke by id.
The key itself is never stored: whoever reads Redis learns nothing usable.

Why a plain SHA-256 and not bcrypt/argon2: those stretch *guessable* secrets
(passwords). A 256-bit random key cannot be guessed, so one fast hash is as
strong as a slow one, and it lets us find the record by its hash in O(1)
instead of trying every stored hash on every request.

The lookup is by digest, so its timing depends only on the digest of what the
caller sent, never on a stored secret; the final `hmac.compare_digest` makes
the one comparison we do against stored data constant-time as well. Unknown,
revoked and expired keys all answer the same `None`: callers cannot tell
which case they hit.

Nothing is cached: revoking a key takes effect on the very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import redis

from tasks.keyspace import KEYS

KEY_PREFIX = "sk-"
#: 32 random bytes = 256 bits, base64url-encoded (43 characters).
KEY_BYTES = 32
#: Longer presented keys are refused before hashing (ours are 46 characters).
MAX_KEY_LENGTH = 200
INDEX = KEYS.api_keys
_DUMMY_DIGEST = hashlib.sha256(b"inferq: no such key").hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


record_key = KEYS.api_key


def display(last4: str) -> str:
    """The only form of a key ever shown after creation: `sk-…abcd`."""
    return f"{KEY_PREFIX}…{last4}"


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    record = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }
    record["rpm"] = int(record["rpm"])
    record["tpm"] = int(record["tpm"]) if record.get("tpm") else None
    record["models"] = json.loads(record.get("models") or "[]")
    record["expires_at"] = float(record["expires_at"]) if record.get("expires_at") else None
    record["created_at"] = float(record["created_at"])
    record["revoked"] = record.get("revoked") == "1"
    record["display"] = display(record["last4"])
    return record


def is_usable(record: dict[str, Any], now: float | None = None) -> bool:
    """Not revoked and not expired."""
    if record["revoked"]:
        return False
    expires_at = record["expires_at"]
    return expires_at is None or (now if now is not None else time.time()) < expires_at


def allows_model(record: dict[str, Any], model: str) -> bool:
    """An empty allow-list means every model."""
    return not record["models"] or model in record["models"]


class KeyStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(
        self,
        *,
        name: str,
        rpm: int,
        tpm: int | None = None,
        models: list[str] | None = None,
        expires_at: float | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Return (the key, its record). The key is not kept: show it now or never."""
        if rpm < 1 or (tpm is not None and tpm < 1):
            raise ValueError("rpm and tpm must be positive")
        key = generate_key()
        key_digest = digest(key)
        key_id = "key_" + secrets.token_hex(8)
        fields = {
            "id": key_id,
            "name": name,
            "rpm": rpm,
            "tpm": tpm or "",
            "models": json.dumps(sorted(set(models or []))),
            "expires_at": expires_at or "",
            "revoked": "0",
            "created_at": time.time(),
            "last4": key[-4:],
            "digest": key_digest,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record_key(key_digest), mapping=fields)
        pipe.hset(INDEX, key_id, key_digest)
        pipe.execute()
        return key, _decode(fields)

    def authenticate(self, presented: str | None) -> dict[str, Any] | None:
        """The record of a usable key, or None for anything else (all cases alike)."""
        candidate = presented if presented and len(presented) <= MAX_KEY_LENGTH else ""
        computed = digest(candidate)
        raw = self.redis.hgetall(record_key(computed))
        record = _decode(raw) if raw else None
        stored = record["digest"] if record else _DUMMY_DIGEST
        matches = hmac.compare_digest(stored.encode(), computed.encode())
        if record is None or not matches or not candidate.startswith(KEY_PREFIX) or not is_usable(record):
            return None
        return record

    def get(self, key_id: str) -> dict[str, Any] | None:
        key_digest = self.redis.hget(INDEX, key_id)
        if key_digest is None:
            return None
        raw = self.redis.hgetall(record_key(key_digest.decode()))
        return _decode(raw) if raw else None

    def list(self) -> list[dict[str, Any]]:
        records = []
        for key_digest in self.redis.hvals(INDEX):
            raw = self.redis.hgetall(record_key(key_digest.decode()))
            if raw:
                records.append(_decode(raw))
        return sorted(records, key=lambda r: r["created_at"])

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked (kept, so usage stays attributable). False if unknown."""
        key_digest = self.redis.hget(INDEX, key_id)
        if key_digest is None:
            return False
        self.redis.hset(record_key(key_digest.decode()), "revoked", "1")
        return True
