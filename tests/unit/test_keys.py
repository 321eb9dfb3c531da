"""API keys: format, entropy, hashing and the checks that need no Redis."""

import base64
import hashlib
import time

from app.auth import keys


def test_key_is_sk_plus_256_random_bits():
    key = keys.generate_key()
    assert key.startswith("sk-")
    raw = base64.urlsafe_b64decode(key[3:] + "=" * (-len(key[3:]) % 4))
    assert len(raw) * 8 >= 256
    assert len({keys.generate_key() for _ in range(1000)}) == 1000


def test_digest_is_sha256_hex_and_never_the_key():
    key = keys.generate_key()
    digest = keys.digest(key)
    assert digest == keys.digest(key) and len(digest) == 64
    # The SHA-256 of the whole key as lowercase hex, computed independently (a hex check alone cannot fail).
    assert digest == hashlib.sha256(key.encode("utf-8")).hexdigest()
    assert digest == bytes.fromhex(digest).hex()
    assert key[3:] not in digest and keys.digest(key + "x") != digest
    assert keys.record_key(digest) == f"inferq:key:{digest}"


def test_display_form_shows_only_the_last_four():
    assert keys.display("abcd") == "sk-…abcd"


def _record(**overrides):
    return {"revoked": False, "expires_at": None, "models": [], **overrides}


def test_usable_unless_revoked_or_expired():
    now = time.time()
    assert keys.is_usable(_record())
    assert not keys.is_usable(_record(revoked=True))
    assert keys.is_usable(_record(expires_at=now + 60), now)
    assert not keys.is_usable(_record(expires_at=now), now)


def test_empty_allow_list_allows_every_model():
    assert keys.allows_model(_record(), "anything")
    assert keys.allows_model(_record(models=["a"]), "a")
    assert not keys.allows_model(_record(models=["a"]), "b")
