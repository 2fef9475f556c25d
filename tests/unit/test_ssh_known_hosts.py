"""The project's known_hosts file and the client key: recorded, replaced, matched; bad keys refused clearly."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from shipyard.errors import UsageError
from shipyard.ssh import KnownHosts, fingerprint, load_client_key, pattern


def test_record_match_and_replace(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "sub" / "known_hosts")
    one, two = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    assert known.keys_for("127.0.0.1", 2222) == []
    known.record("127.0.0.1", 2222, one)
    known.record("127.0.0.1", 2222, one)                   # idempotent
    known.record("10.0.0.5", 22, two)
    text = known.path.read_text()
    assert text.count("[127.0.0.1]:2222 ssh-ed25519 ") == 1 and "\n10.0.0.5 ssh-ed25519 " in "\n" + text
    assert public(known, "127.0.0.1", 2222) == [one.public_data] and public(known, "10.0.0.5", 22) == [two.public_data]
    known.record("127.0.0.1", 2222, two, replace=True)
    assert public(known, "127.0.0.1", 2222) == [two.public_data] and public(known, "10.0.0.5", 22) == [two.public_data]
    assert list(tmp_path.joinpath("sub").iterdir()) == [known.path]      # no temporary file left
    assert pattern("h", 22) == "h" and pattern("::1", 2) == "[::1]:2"
    assert fingerprint(one).startswith("SHA256:")


def public(known: KnownHosts, address: str, port: int) -> list[bytes]:
    return [k.public_data for k in known.keys_for(address, port)]


def test_a_garbage_line_trusts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("[127.0.0.1]:2222 ssh-ed25519 not-base64!!\n")
    assert KnownHosts(path).keys_for("127.0.0.1", 2222) == []


def test_client_keys_that_cannot_be_used_say_why() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    assert load_client_key(key.export_private_key().decode()).public_data == key.public_data
    with pytest.raises(UsageError, match="no SSH key"):
        load_client_key(None)
    with pytest.raises(UsageError, match="passphrase"):
        load_client_key(key.export_private_key("pkcs8-pem", passphrase="pw").decode())
    with pytest.raises(UsageError, match="not a private key"):
        load_client_key("-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----")
