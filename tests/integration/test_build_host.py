"""Builds on a namespaced build host: the build runs there (its hostname, not the controller's files), gets
the service's variables and a secret that no process's argv on the machine shows, fails and times out
with a redacted one-line error leaving nothing on either side, a cut host is refused by name within the
connect timeout, and a transfer damaged either way is refused. Then a fleet deploy whose release is built
on a build host that never had `hosts setup`, served by the one target host."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nethosts import HostFactory, TestHost, ssh_pool
from shipyard.errors import ReleaseError
from shipyard.hosts.ship import pack
from shipyard.releases.git import GitSource
from shipyard.releases.remote import BuildHost, build_argv, env_block, parse_output, remote_build_dir
from shipyard.releases.store import ReleaseStore
from shipyard.secrets.redact import Redactor
from shipyard.testing.cli import CliResult, run_cli
from shipyard.testing.fleet import create_fleet_workspace
from shipyard.testing.receivers import free_port

pytestmark = [pytest.mark.nethosts, pytest.mark.timeout(300)]
SECRET = "s3cr3t-Build-Value-7f1c9a"
BUILDS = "/srv/shipyard/builds"


def git(cwd: Path, *args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


@pytest.fixture
def source(tmp_path: Path) -> tuple[GitSource, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.txt").write_text("the source\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    return GitSource("api", None, repo, tmp_path / "mirrors"), git(repo, "rev-parse", "HEAD")


@pytest.fixture
def controller_only() -> Iterator[Path]:
    """A path on the controller that no test host sees (each host has its own /srv)."""
    path = Path(tempfile.mkdtemp(prefix="shipyard-controller-only-", dir="/srv"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def builder(nethosts: HostFactory) -> TestHost:
    return nethosts.add("build-1")


def build_host(host: TestHost) -> BuildHost:
    return BuildHost(host.name, f"{host.name}={host.user}@{host.address}:22")


def leftovers(host: TestHost) -> list[str]:
    return host.run(["find", BUILDS, "-mindepth", "2"], check=False).stdout.split()


def local_releases(store: ReleaseStore) -> list[str]:
    base = store.root / "api"
    return sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) if base.exists() else []


async def test_the_build_runs_on_the_host_with_its_variables_and_no_secret_in_any_argv(
        builder: TestHost, source: tuple[GitSource, str], controller_only: Path, tmp_path: Path) -> None:
    src, sha = source
    command = (f'hostname > built-on; if test -e {controller_only}; then echo yes; else echo no; fi > saw-controller; '
               'printf %s "$TOKEN" > token.out; printf %s "$PLAIN $SHIPYARD_ENV" > plain.out; '
               'printf %s "$SHIPYARD_RELEASE_DIR" > release-dir; pwd > pwd; '
               'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done > cmdlines; '
               'echo "building with $TOKEN"')
    redactor = Redactor([SECRET])
    async with ssh_pool(builder, tmp_path / "known_hosts") as pool:
        store = ReleaseStore(tmp_path / "releases", ssh_pool=lambda: pool)
        env = {"TOKEN": SECRET, "PLAIN": "hello world", "SHIPYARD_ENV": "prod"}
        dest, result = await store.prepare(src, "api", sha, build=command, env=env, timeout=60,
                                           redact=redactor.redact, build_host=build_host(builder))
        assert result is not None and result.ok
        assert (dest / "built-on").read_text().strip() == "build-1"
        assert (dest / "saw-controller").read_text().strip() == "no"
        assert (dest / "app.txt").read_text() == "the source\n"                  # the exported tree went along
        assert (dest / "token.out").read_text() == SECRET                        # the secret arrived
        assert (dest / "plain.out").read_text() == "hello world prod"
        remote = (dest / "release-dir").read_text()
        assert remote.startswith(f"{BUILDS}/api/{dest.name}.") and (dest / "pwd").read_text().strip() == remote
        cmdlines = (dest / "cmdlines").read_text()
        assert "timeout -k 5 60 sh -c" in cmdlines                              # the capture saw the build
        assert SECRET not in cmdlines
        log = (dest / ".shipyard-build.log").read_text()
        assert "building with ***" in log and SECRET not in log and SECRET not in result.output
        assert store.is_ready(dest) and leftovers(builder) == []
        assert builder.run(["test", "-e", "/srv/shipyard/venv"], check=False).returncode == 1   # no setup there
        # Built once: the same inputs again reuse it, without a session.
        connects = pool.connects
        again, none = await store.prepare(src, "api", sha, build=command, env=env, timeout=60,
                                          redact=redactor.redact, build_host=build_host(builder))
        assert again == dest and none is None and pool.connects == connects
        # Built here with the same inputs is another release.
        assert store.path("api", sha, build=command, env=env) != dest


async def test_a_failing_build_and_a_timeout_leave_nothing_on_either_side(
        builder: TestHost, source: tuple[GitSource, str], tmp_path: Path) -> None:
    src, sha = source
    redactor = Redactor([SECRET])
    async with ssh_pool(builder, tmp_path / "known_hosts") as pool:
        store = ReleaseStore(tmp_path / "releases", ssh_pool=lambda: pool)
        with pytest.raises(ReleaseError) as failed:
            await store.prepare(src, "api", sha, build='touch half-built; echo "leaking $TOKEN" >&2; exit 3',
                                env={"TOKEN": SECRET}, timeout=30, redact=redactor.redact,
                                build_host=build_host(builder))
        assert str(failed.value) == f"build of api {sha[:8]} on build-1 exited 3: leaking ***"
        assert leftovers(builder) == [] and local_releases(store) == []

        started = time.monotonic()
        with pytest.raises(ReleaseError, match=rf"build of api {sha[:8]} on build-1 timed out after 1.5s"):
            await store.prepare(src, "api", sha, build="echo started; sleep 47", env={"TOKEN": SECRET},
                                timeout=1.5, redact=redactor.redact, build_host=build_host(builder))
        assert time.monotonic() - started < 20
        assert leftovers(builder) == [] and local_releases(store) == []
        deadline = time.monotonic() + 10                                        # the whole group was killed
        while sleeping():
            assert time.monotonic() < deadline, sleeping()
            await asyncio.sleep(0.05)


async def test_a_cut_build_host_is_refused_by_name_before_anything_happens(
        builder: TestHost, source: tuple[GitSource, str], tmp_path: Path) -> None:
    src, sha = source
    async with ssh_pool(builder, tmp_path / "known_hosts", connect_timeout=2.0) as pool:
        store = ReleaseStore(tmp_path / "releases", ssh_pool=lambda: pool)
        builder.cut()
        try:
            started = time.monotonic()
            with pytest.raises(ReleaseError, match="build host build-1 is unreachable: build-1 ") as err:
                await store.prepare(src, "api", sha, build="true", env={}, timeout=30,
                                    build_host=build_host(builder))
            assert time.monotonic() - started < 2.0 + 4.0, err.value
        finally:
            builder.restore()
        assert "\n" not in str(err.value)
        assert local_releases(store) == []                                     # not even exported
        assert leftovers(builder) == []


async def test_a_transfer_damaged_either_way_is_refused(builder: TestHost, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(os.urandom(4096))
    data, digest = pack(tree)
    async with ssh_pool(builder, tmp_path / "known_hosts") as pool:
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        remote = remote_build_dir("/srv/shipyard", "api", "k", "up")
        res = await pool.run("build-1", build_argv(remote, digest, 10, "touch built"),
                             stdin=env_block({}) + bytes(bad), timeout=30)
        assert res.exit_status == 3 and res.stdout == b"" and leftovers(builder) == []

        remote = remote_build_dir("/srv/shipyard", "api", "k", "down")
        res = await pool.run("build-1", build_argv(remote, digest, 10, "touch built"), stdin=env_block({}) + data,
                             timeout=30)
        assert res.ok and parse_output(res.stdout)[0] == 0
        back = bytearray(res.stdout)
        back[-10] ^= 0xFF
        with pytest.raises(ReleaseError, match="arrived damaged"):
            parse_output(bytes(back))
        assert leftovers(builder) == []


def sleeping() -> list[str]:
    """Processes of the timed-out build still alive (the hosts share this machine's pid namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            line = (entry / "cmdline").read_bytes()
            if line == b"sleep\x0047\x00" or b"echo started; sleep 47" in line:
                found.append(entry.name)
    return found


def cli(root: Path, *args: str, timeout: float = 240) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    res = run_cli(root, *args, env=env, timeout=timeout)
    assert "Traceback" not in res.stderr, str(res)
    return res


def test_a_fleet_deploy_built_on_a_build_host(nethosts: HostFactory, tmp_path: Path) -> None:
    web, build = nethosts.add("web-1"), nethosts.add("build-1")
    port = free_port()
    extra = ("    build: printf '%s built on %s\\n' \"$(cat VERSION)\" \"$(hostname)\" > VERSION.new "
             "&& mv VERSION.new VERSION\n    build_host: build-1\n")
    ws = create_fleet_workspace(tmp_path / "ws", [web], Path(web.client_key), other_hosts=[build],
                                router=f'{{type: builtin, listen: "127.0.0.1:{port}"}}',
                                strategy="{type: rolling, per: host, drain_timeout: 2s}", extra=extra)
    try:
        setup = cli(ws.root, "hosts", "setup", timeout=300)                # the build host is left be
        assert setup.returncode == 0 and "build-1: a build host only" in setup.stderr, str(setup)
        assert build.run(["test", "-e", "/srv/shipyard/venv"], check=False).returncode == 1
        deployed = cli(ws.root, "deploy", "api", "--env", "prod", "--json")
        assert deployed.returncode == 0 and deployed.json()["state"] == "succeeded", str(deployed)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=10) as resp:
            body = json.load(resp)
        assert body["version"] == "1.0.0 built on build-1" and body["host"] == "web-1", body
        assert leftovers(build) == []
        assert build.run(["test", "-e", "/srv/shipyard/releases"], check=False).returncode == 1  # only web-1's
        assert web.run(["test", "-e", BUILDS], check=False).returncode == 1
    finally:
        cli(ws.root, "agent", "stop")
