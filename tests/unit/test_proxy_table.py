"""The routing table file and the keeper's listener table, as data (real sockets on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from shipyard.proxy.listeners import ListenerTable, split_listen
from shipyard.proxy.table import RouteRecord, load_table, save_table


def test_table_round_trip_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = [RouteRecord("api", "dev", "127.0.0.1:8001", [{"address": "127.0.0.1:9", "weight": 1}],
                          {"response_timeout": 5.0, "a_key_added_later": [1]}, requested="127.0.0.1:0")]
    save_table(path, routes)
    assert load_table(path) == routes                    # options carried as they are (opaque)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routes.json"]   # no temp file left


def test_unreadable_table_is_set_aside_and_legacy_routers_are_taken_once(tmp_path: Path) -> None:
    path, legacy = tmp_path / "routes.json", tmp_path / "state.json"
    legacy.write_text(json.dumps({"instances": [], "routers": [
        {"service": "api", "env": "stg", "listen": "127.0.0.1:8002", "backends": [], "options": {}}]}))
    assert [r.listen for r in load_table(path, legacy)] == ["127.0.0.1:8002"]
    assert load_table(path) == []                         # the legacy file only counts with no table
    save_table(path, [])
    assert load_table(path, legacy) == []                 # a table exists: the old routers stay old
    path.write_text("{not json")
    assert load_table(path, legacy) == []
    assert [p.name.startswith("routes.json.corrupt-") for p in tmp_path.iterdir() if p != legacy] == [True]


def test_listener_table_binds_once_and_lets_go() -> None:
    table = ListenerTable()
    try:
        sock, bound = table.get_or_bind("127.0.0.1:0")
        assert bound == f"127.0.0.1:{sock.getsockname()[1]}"
        assert table.get_or_bind(bound) == (sock, bound)          # the same socket, not a second bind
        named, where = table.get_or_bind("localhost:0")
        assert named is not sock and where.startswith("127.0.0.1:")
        again, _ = table.get_or_bind(f"localhost:{where.rsplit(':', 1)[1]}")
        assert again is named                                      # found through what was asked
        table.keep_only([bound])
        assert list(table.socks) == [bound] and named.fileno() == -1
        table.release(bound)
        assert table.socks == {} and sock.fileno() == -1
        with socket.socket() as other:                             # the port is really free again
            other.bind(("127.0.0.1", int(bound.rsplit(":", 1)[1])))
    finally:
        table.close_all()


@pytest.mark.parametrize("bad", ["8000", "host:", ":80", "h:99999", "h:x"])
def test_bad_listen_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_listen(bad)
