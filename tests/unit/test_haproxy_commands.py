"""HAProxy runtime API lines: built only from checked parts, so no input adds a command, a line or an
argument; answers parsed; the slot plan is stable and refuses too few slots before any line exists."""

from __future__ import annotations

import pytest

from shipyard.commands import haproxy as cmd
from shipyard.routers.haproxy import HaproxyError, Slot, default_prefix, haproxy_weights, plan

HOSTILE_NAMES = ["app; shutdown sessions server app/app1", "app\nshutdown frontend web", "app 1", "", "a/b",
                 "x" * 65, "app\r", "app\t", "app#", "ünï", None, 3]


def test_lines() -> None:
    assert cmd.set_addr("app", "app1", "127.0.0.1", 8080) == "set server app/app1 addr 127.0.0.1 port 8080"
    assert cmd.set_addr("app", "app1", "::1", 80) == "set server app/app1 addr ::1 port 80"
    assert cmd.set_weight("app", "app1", 256) == "set server app/app1 weight 256"
    assert cmd.set_state("be.x-1", "s_1", "drain") == "set server be.x-1/s_1 state drain"
    assert cmd.set_health("app", "app2", "up") == "set server app/app2 health up"
    assert cmd.show_servers_state("app") == "show servers state app"
    assert cmd.show_stat("app") == "show stat app 4 -1"
    assert cmd.show_servers_conn("app") == "show servers conn app"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused(name: object) -> None:
    for build in (lambda: cmd.set_weight(name, "app1", 1), lambda: cmd.set_weight("app", name, 1),  # type: ignore[arg-type]
                  lambda: cmd.show_servers_state(name), lambda: cmd.show_stat(name)):  # type: ignore[arg-type]
        with pytest.raises(cmd.HaproxyCommandError, match="invalid HAProxy"):
            build()


@pytest.mark.parametrize("ip", ["127.0.0.1 port 1; shutdown sessions", "localhost", "1.2.3", "127.0.0.1\n",
                                "", "::1 port 2"])
def test_hostile_addresses_are_refused(ip: str) -> None:
    with pytest.raises(cmd.HaproxyCommandError, match="invalid server address"):
        cmd.set_addr("app", "app1", ip, 80)


@pytest.mark.parametrize("port", [0, 65536, 99999, -1, True, "80", 8.5])
def test_bad_ports_are_refused(port: object) -> None:
    with pytest.raises(cmd.HaproxyCommandError, match="invalid port"):
        cmd.set_addr("app", "app1", "127.0.0.1", port)  # type: ignore[arg-type]


@pytest.mark.parametrize("weight", [-1, 257, True, "1; shutdown", 1.5])
def test_bad_weights_are_refused(weight: object) -> None:
    with pytest.raises(cmd.HaproxyCommandError, match="invalid HAProxy weight"):
        cmd.set_weight("app", "app1", weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["on", "ready; shutdown sessions", "READY", ""])
def test_bad_states_are_refused(state: str) -> None:
    with pytest.raises(cmd.HaproxyCommandError, match="invalid server state"):
        cmd.set_state("app", "app1", state)
    with pytest.raises(cmd.HaproxyCommandError, match="invalid server health"):
        cmd.set_health("app", "app1", state)


def test_split_address() -> None:
    assert cmd.split_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert cmd.split_address("[::1]:8080") == ("::1", 8080)
    for bad in ("127.0.0.1", "127.0.0.1:x", "host:80", "127.0.0.1:80 weight 0", ":80"):
        with pytest.raises(cmd.HaproxyCommandError):
            cmd.split_address(bad)


def test_answers() -> None:
    assert cmd.set_failed("\n") is None
    assert cmd.set_failed("IP changed from '0.0.0.0' to '127.0.0.1', port changed from '+0' to '8001' by "
                          "'stats socket command'\n\n") is None
    assert cmd.set_failed("no need to change the addr, no need to change the port by 'x'\n") is None
    assert cmd.set_failed("No such server.\n\n") == "No such server."
    assert cmd.set_failed("Absolute weight can only be\nbetween 0 and 256 inclusive.\n") == (
        "Absolute weight can only be between 0 and 256 inclusive.")
    state = "1\n# be_id be_name srv_name\n3 app app1\n3 app app2\n\n"
    assert cmd.table_rows(state) == [{"be_id": "3", "be_name": "app", "srv_name": "app1"},
                                     {"be_id": "3", "be_name": "app", "srv_name": "app2"}]
    assert cmd.table_rows("Can't find backend.\n") == []
    assert cmd.csv_rows("# pxname,svname,scur,\napp,app1,2,\n") == [{"pxname": "app", "svname": "app1",
                                                                       "scur": "2", "": ""}]


def test_weights_map_to_0_256_in_proportion() -> None:
    assert haproxy_weights([100, 100]) == [100, 100]
    assert haproxy_weights([900, 300, 0]) == [256, 85, 0]
    assert haproxy_weights([10000, 1]) == [256, 1]          # never 0 for a backend meant to get traffic
    assert haproxy_weights([]) == []


def test_default_prefix() -> None:
    assert default_prefix(["app1", "app2", "app10"]) == "app"
    assert default_prefix(["static", "web1", "web2"]) == "web"


def slot(name: str, ip: str = "0.0.0.0", port: int = 0, admin: int = 5, weight: int = 1) -> Slot:
    return Slot(name, ip, port, admin, 2 if admin & 1 == 0 else 0, weight, True)


def test_plan_keeps_slots_and_fills_free_ones() -> None:
    slots = [slot("app1", "127.0.0.1", 8001, admin=4, weight=1), slot("app2", "127.0.0.1", 8002, admin=4),
             slot("app3"), slot("app4")]
    lines = plan("app", slots, [("127.0.0.1", 8002, 1), ("127.0.0.1", 8003, 2)])
    assert lines == ["set server app/app3 addr 127.0.0.1 port 8003", "set server app/app3 weight 2",
                     "set server app/app3 state ready", "set server app/app3 health up",
                     "set server app/app1 weight 0", "set server app/app1 state drain"]


def test_plan_refuses_too_few_slots() -> None:
    slots = [slot("app1", "127.0.0.1", 8001, admin=4), slot("app2")]
    with pytest.raises(HaproxyError, match="has 2 server slots, 1 free: 2 more are needed"):
        plan("app", slots, [("127.0.0.1", 9001, 1), ("127.0.0.1", 9002, 1)])


def test_plan_reuses_a_draining_slot_last() -> None:
    slots = [slot("app1", "127.0.0.1", 8001, admin=4 | 8, weight=0), slot("app2", "127.0.0.1", 8002, admin=4)]
    lines = plan("app", slots, [("127.0.0.1", 8002, 1), ("127.0.0.1", 8003, 1)])
    assert lines[0] == "set server app/app1 addr 127.0.0.1 port 8003"
    assert plan("app", slots, [("127.0.0.1", 8002, 1)]) == []       # nothing to do: nothing sent


def test_plan_gives_an_address_back_the_slot_it_last_had() -> None:
    slots = [slot("app1"), slot("app2", "127.0.0.1", 8002, admin=1 | 4)]        # app2 drained into maint
    assert plan("app", slots, [("127.0.0.1", 8002, 1)]) == ["set server app/app2 state ready",
                                                             "set server app/app2 health up"]
