"""The local encrypted store, its master key rules, the env provider and the value generators."""

from __future__ import annotations

import base64
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from shipyard.errors import SecretsError, UsageError
from shipyard.secrets.generate import DJANGO_CHARS, django_key, jwt_rsa, token
from shipyard.secrets.keys import MASTER_KEY_ENV, KeySource
from shipyard.secrets.providers.env import EnvProvider
from shipyard.secrets.providers.local import LocalProvider


def key_text() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def store(tmp_path: Path, env: str = "prod", key: str | None = None) -> LocalProvider:
    keys = KeySource.for_project("gli", tmp_path / "project", environ={MASTER_KEY_ENV: key or KEY})
    return LocalProvider(tmp_path / "project" / ".shipyard" / "secrets", "gli", env, keys)


KEY = key_text()


def test_round_trip_private_and_opaque(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.get(["A"]) == {} and s.list() == []            # no file yet: empty, and no key needed
    s.set("DB_PASSWORD", "hunter2-very-secret")
    s.set("JWT", "line1\nline2")
    assert s.get(["DB_PASSWORD", "JWT", "NOPE"]) == {"DB_PASSWORD": "hunter2-very-secret", "JWT": "line1\nline2"}
    assert s.list() == ["DB_PASSWORD", "JWT"]
    raw = s.path.read_bytes()
    assert b"hunter2" not in raw and b"DB_PASSWORD" not in raw
    assert stat.S_IMODE(s.path.stat().st_mode) == 0o600
    assert s.delete("JWT") and not s.delete("JWT") and s.list() == ["DB_PASSWORD"]


def test_wrong_key_is_a_clear_error_never_garbage(tmp_path: Path) -> None:
    store(tmp_path).set("A", "value-a")
    with pytest.raises(SecretsError) as err:
        store(tmp_path, key=key_text()).get(["A"])
    assert str(err.value).startswith("cannot decrypt .shipyard/secrets/prod.enc: wrong master key (from "
                                     "SHIPYARD_MASTER_KEY)")


def test_a_file_is_bound_to_its_environment(tmp_path: Path) -> None:
    prod = store(tmp_path)
    prod.set("A", "prod-value")
    shutil.copy(prod.path, prod.path.with_name("stg.enc"))
    with pytest.raises(SecretsError, match=r"cannot decrypt \.shipyard/secrets/stg\.enc"):
        store(tmp_path, env="stg").get(["A"])


def test_bad_master_key_variable(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="SHIPYARD_MASTER_KEY is not a usable key"):
        store(tmp_path, key="short").set("A", "b")


def test_key_file_is_created_private_outside_the_repo(tmp_path: Path) -> None:
    root = tmp_path / "project"
    keys = KeySource.for_project("gli", root, environ={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    with pytest.raises(SecretsError, match="no master key"):
        keys.load()
    key = keys.load(create=True)
    assert keys.key_file == tmp_path / "cfg" / "shipyard" / "gli.key"
    assert stat.S_IMODE(keys.key_file.stat().st_mode) == 0o600 and keys.load() == key
    keys.key_file.chmod(0o644)
    with pytest.raises(SecretsError, match="readable by others"):
        keys.load()
    inside = KeySource.for_project("gli", root, key_file="keys/gli.key", environ={})
    with pytest.raises(UsageError, match="inside the project"):
        inside.load(create=True)


def test_env_provider_prefix_and_read_only() -> None:
    p = EnvProvider("SY_", {"SY_A": "1", "A": "plain", "SY_B": "2"})
    assert p.get(["A", "B", "C"]) == {"A": "1", "B": "2"} and p.list() == ["A", "B"]
    assert EnvProvider("", {"PATH": "/bin"}).list() == []      # unprefixed: not a listing of every variable
    with pytest.raises(UsageError, match="read-only"):
        p.set("A", "x")


def test_generators() -> None:
    key = django_key()
    assert len(key) == 50 and set(key) <= set(DJANGO_CHARS) and key != django_key()
    assert len(token(64)) == 64 and token(16).isalnum()
    with pytest.raises(ValueError):
        token(4)
    private_pem, public_pem = jwt_rsa(2048)
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----") and "BEGIN PUBLIC KEY" in public_pem
    private = serialization.load_pem_private_key(private_pem.encode(), None)
    public = serialization.load_pem_public_key(public_pem.encode())
    signature = private.sign(b"header.payload", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    public.verify(signature, b"header.payload", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
