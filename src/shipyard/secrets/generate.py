"""New secret values: Django-style secret keys, random tokens, RS256 JWT key pairs (PEM).

What the GLI scripts made per environment by hand; here the values go straight into a provider and
only their names are ever printed.
"""

from __future__ import annotations

import secrets
import string

DJANGO_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)"   # django.core.management.utils
TOKEN_CHARS = string.ascii_letters + string.digits


def django_key(length: int = 50) -> str:
    """What `django.core.management.utils.get_random_secret_key` returns (same alphabet and length)."""
    return "".join(secrets.choice(DJANGO_CHARS) for _ in range(length))


def token(length: int = 32) -> str:
    """Letters and digits only, so the value survives shells, URLs and .env files unquoted."""
    if length < 8:
        raise ValueError("a token shorter than 8 characters is too easy to guess")
    return "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))


def jwt_rsa(bits: int = 2048) -> tuple[str, str]:
    """(private key PEM in PKCS#8, public key PEM) for signing RS256 JWTs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public
