"""Secrets: password hashes, random tokens, constant-time comparison, the process secret key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# scrypt cost: ~50 ms and 16 MiB per hash on this class of machine, the OWASP-recommended floor.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    """Salted scrypt hash, self-describing so the cost can be raised later."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), maxmem=_SCRYPT_MAXMEM, dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# A hash computed once so that a login for an unknown user costs as much as for a known one.
def dummy_password_check(password: str) -> None:
    hashlib.scrypt(password.encode(), salt=b"0" * 16, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM)


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a leaked database does not hand out sessions."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def redact(secret: str) -> str:
    """What may appear in a log line instead of a secret."""
    return (secret[:4] + "…") if len(secret) > 8 else "…"


def private_data_dir(data_dir: Path) -> None:
    """The data folder (database, secret key) readable by the server's user only (0700)."""
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created:
        os.chmod(data_dir, 0o700)  # mkdir's mode is filtered by the umask


def load_or_create_secret_key(configured: str, data_dir: Path) -> str:
    """The configured key, else one generated once and kept (mode 600) under the data folder."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    try:
        existing = path.read_text().strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    private_data_dir(data_dir)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this site created it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class StreamKeyCipher:
    """Stream keys at rest: sealed with AES-256-GCM under a key derived from the server secret, bound to the
    row's public key id (a sealed value copied to another row does not open). The owner can be shown the key
    again (dashboard, API) while a copy of the database alone does not let anyone publish."""

    PREFIX = "v1."

    def __init__(self, server_secret: str) -> None:
        key = hmac.new(server_secret.encode(), b"live-server stream keys v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, key_id: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, secret.encode(), key_id.encode())
        return self.PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, key_id: str, sealed: str) -> str:
        """The secret; ValueError when the value was not sealed by this server secret for this key id."""
        if not sealed.startswith(self.PREFIX):
            raise ValueError("not a sealed stream key")
        raw = base64.urlsafe_b64decode(sealed[len(self.PREFIX):] + "=" * (-len(sealed) % 4))
        try:
            return self._aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except (InvalidTag, ValueError):
            raise ValueError("stream key sealed with another server secret or altered") from None
