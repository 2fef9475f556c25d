"""Authenticated encryption of small blobs (AES-256-GCM from `cryptography`), shared by the local secret
store and the agent's state file.

GCM both hides and authenticates: a wrong key or a changed byte fails loudly (InvalidTag) instead of
decrypting to garbage. The associated data binds a blob to where it belongs (project and environment),
so prod.enc copied over stg.enc does not quietly become staging's secrets.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(Exception):
    """The key does not open this blob (wrong key, wrong context or a changed file)."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str) -> bytes:
    """A key written as urlsafe or standard base64 (what `encode_key` and `openssl rand -base64 32` give)."""
    raw = text.strip()
    try:
        key = base64.urlsafe_b64decode(raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"decodes to {len(key)} bytes, not {KEY_BYTES}")
    return key


def seal(key: bytes, plaintext: bytes, context: str) -> str:
    """nonce + ciphertext, base64 (text, so it fits in JSON)."""
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode())).decode()


def unseal(key: bytes, token: str, context: str) -> bytes:
    try:
        blob = base64.b64decode(token, validate=True)
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
    except (InvalidTag, ValueError, binascii.Error) as exc:
        raise SealError("cannot decrypt: wrong key, or the data was changed") from exc


def write_private(path: os.PathLike[str] | str, data: str) -> None:
    """Write atomically with mode 0600 from the first byte (never world-readable, never half-written)."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
