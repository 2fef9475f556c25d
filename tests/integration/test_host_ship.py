"""ship_release to namespaced hosts: in parallel, one session per host (the host says whether it wants the
archive), sha256-checked there (a damaged upload is refused, nothing unpacked), skipped where present,
keep-N pruning that spares releases in use, and a cut host failing alone while the others get it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nethosts import HostFactory, ssh_pool
from shipyard.errors import TargetError
from shipyard.hosts.ship import install_argv, pack, ship_release

pytestmark = pytest.mark.nethosts
ROOT = "/srv/shipyard/releases/api"


def make_release(root: Path, text: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "app.py").write_text(f"print({text!r})\n")
    (root / "bin" / "run").write_text("#!/bin/sh\nexec python3 app.py\n")
    (root / "bin" / "run").chmod(0o755)
    (root / "blob").write_bytes(hashlib.sha256(text.encode()).digest() * 4096)
    return root


async def test_ship_skip_prune_refuse_and_a_cut_host(nethosts: HostFactory, tmp_path: Path) -> None:
    hosts = [nethosts.add(f"web-{i}") for i in (1, 2, 3)]
    names = [h.name for h in hosts]
    async with ssh_pool(hosts, tmp_path / "known_hosts") as pool:
        rel1 = make_release(tmp_path / "r1", "one")
        results = await ship_release(pool, names, rel1, "api", "r1", keep=2)
        assert set(results) == set(names)
        for host in hosts:
            res = results[host.name]
            assert not res.skipped and res.bytes > 0 and res.remote_dir == f"{ROOT}/r1", res
            assert host.run(["cat", f"{ROOT}/r1/app.py"]).stdout == "print('one')\n"
            assert host.run(["test", "-x", f"{ROOT}/r1/bin/run"], check=False).returncode == 0
            assert host.run(["ls", "-A", ROOT]).stdout.split() == ["r1"]   # no .incoming-* left behind
        connects = pool.connects
        again = await ship_release(pool, names, rel1, "api", "r1", keep=2)
        assert all(r.skipped and r.bytes == 0 for r in again.values()), again
        assert pool.connects == connects

        # A damaged upload is refused by the host's sha256 check, and nothing of it is unpacked.
        data, digest = pack(make_release(tmp_path / "r9", "nine"))
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        res = await pool.run("web-1", install_argv(f"{ROOT}/r9", digest, 5, {"r9"}), offer=bytes(bad), timeout=30)
        assert res.exit_status == 3, res
        assert hosts[0].run(["ls", "-A", ROOT]).stdout.split() == ["r1"]

        # keep=2 keeps the new one and the newest other; r1 is in use, so it stays whatever its age.
        for n in (2, 3, 4):
            await ship_release(pool, names, make_release(tmp_path / f"r{n}", f"v{n}"), "api", f"r{n}", keep=2,
                               in_use={"r1"})
        for host in hosts:
            assert sorted(host.run(["ls", ROOT]).stdout.split()) == ["r1", "r3", "r4"]
        await ship_release(pool, names, make_release(tmp_path / "r5", "v5"), "api", "r5", keep=2)
        assert sorted(hosts[2].run(["ls", ROOT]).stdout.split()) == ["r4", "r5"]

        # A cut host fails, named; the others get the release all the same.
        hosts[1].cut()
        try:
            with pytest.raises(TargetError, match="web-2") as err:
                await ship_release(pool, names, make_release(tmp_path / "r6", "v6"), "api", "r6", keep=3)
        finally:
            hosts[1].restore()
        assert "web-1" not in str(err.value) and "web-3" not in str(err.value)
        for host in (hosts[0], hosts[2]):
            assert host.run(["cat", f"{ROOT}/r6/app.py"]).stdout == "print('v6')\n"
