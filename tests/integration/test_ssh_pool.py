"""shipyard.ssh against a real OpenSSH server on 127.0.0.1: argv intact, strict host keys, distinct
failures (refused, timeout, auth), one connection per host, the parallelism bound."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import asyncssh
import pytest
from ssh_helpers import pool, spec, sshd_fixture, trusted_pool  # noqa: F401 - the `sshd` fixture

from shipyard.errors import HostKeyChanged, HostKeyUnknown, SshAuthFailed, SshRefused, SshTimeout
from shipyard.ssh import KnownHosts
from shipyard.testing.sshd import Sshd, free_port, write_key

HOSTILE = ["a b", "it's", '"double"', "$(touch {canary})", "`touch {canary}`", "; touch {canary}", "x && y",
           "new\nline", "*", "", "-n", "back\\slash", "\t tab ", "ünïcødé", "$HOME", "'", "--", "a=b", "|", ">f"]


async def test_hostile_arguments_arrive_intact_over_one_connection(sshd: Sshd, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    args = [a.format(canary=canary) for a in HOSTILE]
    async with trusted_pool(sshd, tmp_path) as p:
        res = await p.run("web-1", ["printf", "%s\\0", *args], timeout=20)
        assert res.ok, res
        assert res.stdout.split(b"\0")[:-1] == [a.encode() for a in args]
        # stdin is passed as bytes, env through `env`, both untouched by any shell
        data = bytes(range(256)) * 64
        echoed = await p.run("web-1", ["cat"], stdin=data, timeout=20)
        assert echoed.stdout == data
        env = await p.run("web-1", ["sh", "-c", 'printf %s "$V"'], env={"V": args[3] + args[7]}, timeout=20)
        assert env.out == args[3] + args[7]
        failed = await p.run("web-1", ["sh", "-c", "echo oops >&2; exit 7"], timeout=20)
        assert (failed.exit_status, failed.err) == (7, "oops\n")
        assert p.connects == 1        # every command above went over the one connection
    assert not canary.exists()


async def test_an_offer_is_sent_only_when_the_command_asks_for_it(sshd: Sshd, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    async with trusted_pool(sshd, tmp_path) as p:
        asked = await p.run("web-1", ["sh", "-c", "echo send; cat; echo done >&2"], offer=data, timeout=20)
        assert (asked.exit_status, asked.stdout, asked.err) == (0, data, "done\n")
        # Not asked: the data is not sent, stdin is closed (cat sees EOF), and the first line is stdout.
        kept = await p.run("web-1", ["sh", "-c", "echo have; cat; exit 4"], offer=data, timeout=20)
        assert (kept.exit_status, kept.out) == (4, "have\n")
        quiet = await p.run("web-1", ["true"], offer=data, timeout=20)
        assert (quiet.exit_status, quiet.stdout) == (0, b"")
        with pytest.raises(SshTimeout, match="sleep did not finish"):
            await p.run("web-1", ["sleep", "30"], offer=data, timeout=0.5)


async def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd, tmp_path: Path) -> None:
    async with pool(sshd, tmp_path / "known_hosts") as p:
        with pytest.raises(HostKeyUnknown) as caught:
            await p.run("web-1", ["true"], timeout=20)
    err = caught.value
    assert err.host == "web-1" and err.fingerprint == sshd.fingerprint
    assert sshd.fingerprint in str(err) and "shipyard hosts trust web-1" in str(err) and "\n" not in str(err)
    assert not (tmp_path / "known_hosts").exists()      # refusing never records anything


async def test_a_key_of_another_type_recorded_is_a_changed_key(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    KnownHosts(known).record("127.0.0.1", sshd.port, asyncssh.generate_private_key("ecdsa-sha2-nistp256"))
    async with pool(sshd, known) as p:
        with pytest.raises(HostKeyChanged) as caught:
            await p.run("web-1", ["true"], timeout=20)
    assert caught.value.fingerprint == sshd.fingerprint and "--replace" in str(caught.value)


async def test_a_wrong_client_key_is_an_auth_failure(sshd: Sshd, tmp_path: Path) -> None:
    other = write_key(tmp_path / "other_key")
    async with trusted_pool(sshd, tmp_path, client_key=other.export_private_key().decode()) as p:
        with pytest.raises(SshAuthFailed) as caught:
            await p.run("web-1", ["true"], timeout=20)
    assert "web-1" in str(caught.value) and "authentication failed" in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_a_closed_port_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    closed = spec(sshd, "down-1", port=free_port())
    async with trusted_pool(sshd, tmp_path, [closed]) as p:
        with pytest.raises(SshRefused, match=r"down-1.*connection refused"):
            await p.run("down-1", ["true"], timeout=20)


async def test_a_server_that_never_answers_times_out_within_connect_timeout(sshd: Sshd, tmp_path: Path) -> None:
    with socket.socket() as silent:              # accepts (the kernel does) but never sends a banner
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = spec(sshd, "mute-1", port=silent.getsockname()[1])
        async with trusted_pool(sshd, tmp_path, [mute], connect_timeout=0.5) as p:
            t0 = time.monotonic()
            with pytest.raises(SshTimeout, match=r"mute-1.*within 500ms"):
                await p.run("mute-1", ["true"], timeout=20)
            assert 0.4 < time.monotonic() - t0 < 5.0


async def test_a_command_past_its_timeout_fails_and_the_connection_serves_on(sshd: Sshd, tmp_path: Path) -> None:
    async with trusted_pool(sshd, tmp_path) as p:
        with pytest.raises(SshTimeout, match=r"web-1.*sleep did not finish within 300ms"):
            await p.run("web-1", ["sleep", "30"], timeout=0.3)
        assert (await p.run("web-1", ["true"], timeout=20)).ok


async def test_parallelism_across_hosts_is_bounded(sshd: Sshd, tmp_path: Path) -> None:
    hosts = [spec(sshd, f"web-{i}") for i in range(9)]     # nine entries, one server: nine connections
    log = tmp_path / "concurrency.log"
    # Each command waits (up to 3 s) until three have started, so the bound is reached however slow the
    # machine is, then stays a little: more than three at once would show in the log.
    script = ('echo + >> "$1"; i=0; while [ "$(grep -c + "$1")" -lt 3 ] && [ $i -lt 60 ]; do sleep 0.05; '
              'i=$((i+1)); done; sleep 0.2; echo - >> "$1"')
    async with trusted_pool(sshd, tmp_path, hosts, parallel=3) as p:
        results = await p.each([h.name for h in hosts],
                               lambda n: p.run(n, ["sh", "-c", script, "sh", str(log)], timeout=30))
        assert all(r.ok for r in results.values() if not isinstance(r, Exception)), results
        assert p.connects == 9
    running, peak = 0, 0
    for line in log.read_text().split():
        running += 1 if line == "+" else -1
        peak = max(peak, running)
    assert running == 0 and peak == 3, log.read_text()


async def test_concurrent_commands_share_one_connect(sshd: Sshd, tmp_path: Path) -> None:
    async with trusted_pool(sshd, tmp_path) as p:
        results = await asyncio.gather(*(p.run("web-1", ["echo", str(i)], timeout=30) for i in range(12)))
        assert [r.out for r in results] == [f"{i}\n" for i in range(12)]
        assert p.connects == 1
