"""`services.<name>.build_host`: the config's checks, the release key, and the remote build's argv, stdin
block and answer as data; the build script itself run by this machine's sh (no SSH needed for that)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from shipyard.config import load_config
from shipyard.engine.settings import service_settings
from shipyard.errors import ConfigError, ReleaseError
from shipyard.hosts.ship import pack
from shipyard.releases.remote import (
    BuildHost,
    build_argv,
    cleanup_argv,
    env_block,
    parse_output,
    remote_build_dir,
    unpack,
)
from shipyard.releases.store import ReleaseStore
from shipyard.ssh import command_line

CONFIG = """\
project: x
repos: {{api: {{path: .}}}}
environments: {{prod: {{branch: main}}}}
hosts:
  web-1: {{address: 198.18.0.11, user: deploy}}
  build-1: {{address: 198.18.0.20, user: builder, port: 2222}}
services:
  api:
    repo: api
    run: python3 app.py
{service}
"""


def load(tmp_path: Path, service: str) -> object:
    path = tmp_path / "shipyard.yaml"
    path.write_text(CONFIG.format(service=service))
    return load_config(path, environ={})


def test_build_host_loads_into_the_settings(tmp_path: Path) -> None:
    config = load(tmp_path, "    build: make\n    build_host: build-1")
    s = service_settings(config, tmp_path, "api", "prod")
    assert s.build_host == BuildHost("build-1", "build-1=builder@198.18.0.20:2222")
    assert service_settings(load(tmp_path, "    build: make"), tmp_path, "api", "prod").build_host is None


@pytest.mark.parametrize(("service", "message"), [
    ("    build: make\n    build_host: build-9",
     r"services\.api\.build_host: 'build-9': unknown host; define it under `hosts` \(known: build-1, web-1\)"),
    ("    build_host: build-1", r"services\.api\.build_host: build_host needs a `build` command to run there"),
    ("    build: '  '\n    build_host: build-1", "build_host needs a `build` command"),
    ("    build: make\n    build_host: 'bad name'", r"services\.api\.build_host"),
])
def test_bad_build_host_is_one_line(tmp_path: Path, service: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, service)
    assert "\n" not in str(caught.value)


def test_the_key_includes_the_build_host_and_is_unchanged_without_one(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases")
    env = {"A": "1", "SHIPYARD_ENV": "prod"}
    sha = "ab" * 20
    here = store.key(sha, build="make", env=env)
    # What the key was before build hosts existed: the same inputs, HMAC'd with the store's key.
    secret = bytes.fromhex((tmp_path / "releases" / ".key").read_text())
    inputs = json.dumps({"sha": sha, "build": "make", "env": sorted(env.items())}, separators=(",", ":"))
    assert here == f"{sha}-{hmac.new(secret, inputs.encode(), hashlib.sha256).hexdigest()[:16]}"
    assert store.key(sha, build="make", env=env, build_host=None) == here
    one = store.key(sha, build="make", env=env, build_host=BuildHost("b", "b=u@10.0.0.1:22"))
    other = store.key(sha, build="make", env=env, build_host=BuildHost("b", "b=u@10.0.0.2:22"))
    assert len({here, one, other}) == 3
    assert store.path("api", sha, build="make", env=env, build_host=BuildHost("b", "b=u@10.0.0.1:22")).name == one


def test_argv_is_constant_script_with_values_as_arguments() -> None:
    remote = remote_build_dir("/srv/ship yard", "api", "abc-123", "f00d")
    assert remote == "/srv/ship yard/builds/api/abc-123.f00d"
    argv = build_argv(remote, "e3b0", 2.5, "make && echo 'done'")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "/srv/ship yard/builds/api", "abc-123.f00d", "e3b0",
                                                     "2.5", "make && echo 'done'"]
    assert argv[2] == build_argv("/x/builds/y/z.1", "0", 1, "true")[2]       # the script never varies
    assert cleanup_argv(remote)[4:] == [remote]
    line = command_line(argv)
    assert "'/srv/ship yard/builds/api'" in line


def test_env_block_encodes_every_byte_and_refuses_what_cannot_travel() -> None:
    block = env_block({"A": "%s\n'", "EMPTY": ""})
    assert block == b"A \\045\\163\\012\\047\nEMPTY \n\n"
    with pytest.raises(ReleaseError, match="not a variable name"):
        env_block({"A-B": "x"})
    with pytest.raises(ReleaseError, match="NUL"):
        env_block({"A": "x\0y"})


def test_parse_output_checks_the_built_tree() -> None:
    archive = b"\x1f\x8b not really gzip"
    good = b"build 0\n" + hashlib.sha256(archive).hexdigest().encode() + b"\n" + archive
    assert parse_output(good) == (0, archive)
    assert parse_output(b"build 3\n") == (3, None)
    damaged = bytearray(good)
    damaged[-3] ^= 0xFF
    with pytest.raises(ReleaseError, match="arrived damaged"):
        parse_output(bytes(damaged))
    with pytest.raises(ReleaseError, match="not a build result"):
        parse_output(b"hello\n")


def run_script(tmp_path: Path, tree: Path, env: dict[str, str], command: str, *,
               timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
    data, digest = pack(tree)
    remote = remote_build_dir(str(tmp_path / "host"), "api", "k", "t")
    argv = build_argv(remote, digest, timeout, command)
    return subprocess.run(argv, input=env_block(env) + data,
                          capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_the_script_builds_with_the_variables_and_leaves_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "src.txt").write_text("source\n")
    values = {"TRICKY": "a %s b\n\nline 'two' $(id) `id` ; *\n", "UNICODE": "ünï €", "DASH": "-n",
              "EMPTY": "", "BIG": "x" * 5000}
    done = run_script(tmp_path, tree, values,
                      'for n in TRICKY UNICODE DASH EMPTY BIG; do eval "printf %s \\"\\$$n\\"" > "$n.out"; done; '
                      'pwd > where; printf %s "$SHIPYARD_RELEASE_DIR" > release-dir; cat src.txt; echo to-stderr >&2')
    assert done.returncode == 0, done.stderr
    status, archive = parse_output(done.stdout)
    assert status == 0 and archive is not None
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("from the export")
    unpack(archive, out)
    for name, value in values.items():
        assert (out / f"{name}.out").read_text() == value, name
    assert (out / "where").read_text().strip() == str(tmp_path / "host/builds/api/k.t")
    assert (out / "release-dir").read_text() == str(tmp_path / "host/builds/api/k.t")
    assert not (out / "stale").exists() and (out / "src.txt").read_text() == "source\n"
    assert done.stderr.decode().split() == ["source", "to-stderr"]
    assert list((tmp_path / "host/builds/api").iterdir()) == []          # dir, archives and log removed


def test_the_script_reports_failure_timeout_and_a_damaged_upload(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    failed = run_script(tmp_path, tree, {}, "echo oops; exit 3")
    assert failed.returncode == 0 and parse_output(failed.stdout) == (3, None)
    assert failed.stderr == b"oops\n"
    timed = run_script(tmp_path, tree, {}, "sleep 30", timeout=0.5)
    assert parse_output(timed.stdout) == (124, None)
    data, digest = pack(tree)
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    remote = remote_build_dir(str(tmp_path / "host"), "api", "k", "u")
    damaged = subprocess.run(build_argv(remote, digest, 5, "touch built"), input=env_block({}) + bytes(bad),
                             capture_output=True, timeout=60)
    assert damaged.returncode == 3 and damaged.stdout == b""
    assert list((tmp_path / "host/builds/api").iterdir()) == []


def test_unpack_refuses_a_tree_escaping_its_directory(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "rel"
    dest.mkdir()
    (dest / "kept").write_text("k")
    with pytest.raises(ReleaseError, match="cannot unpack"):
        unpack(buf.getvalue(), dest)
    assert not (tmp_path / "escape").exists() and (dest / "kept").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]


@pytest.mark.parametrize(("target", "router", "expected"), [
    ("[web-1]", "{type: builtin}", {"build-1"}),
    ("[web-1, build-1]", "{type: builtin}", set()),
    ("[web-1]", "{type: nginx, upstream: api, file: /etc/nginx/conf.d/api.conf, host: build-1}",
     set()),
])
def test_hosts_setup_leaves_build_only_hosts_be(tmp_path: Path, target: str, router: str,
                                                expected: set[str]) -> None:
    from shipyard.cli.hosts import build_only_hosts

    config = load(tmp_path, f"    build: make\n    build_host: build-1\n"
                            f"    deploy: {{target: {{type: ssh, hosts: {target}}}, router: {router}}}")
    assert build_only_hosts(config) == expected


def test_a_tree_always_packs_to_the_same_bytes(tmp_path: Path) -> None:
    """The skip-when-present check on hosts compares sha256s: gzip's header must not carry the pack time."""
    from shipyard.hosts.ship import pack

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    first, digest = pack(tmp_path)
    assert first[4:8] == b"\0\0\0\0"                  # gzip MTIME: none
    assert pack(tmp_path) == (first, digest)
