"""Real test hosts on this machine: each a Linux network namespace running Debian's openssh-server.

A `NetHosts` owns one bridge on the controller (this machine) with the first address of a /24 inside
198.18.0.0/15 (e.g. 198.18.0.1) and at most 8 hosts on it (.11 to .18). Each host is
- a network namespace with a veth to the bridge (its end is `eth0` with the host's address),
- its own mount and UTS namespace, made by `unshare` before sshd starts: a private tmpfs on /srv (hosts see
  neither each other's /srv nor the controller's) and its own hostname (the host's name),
- sshd in the foreground (`-D -e`) with its own config, per-host ed25519 host key, pubkey login as `root`
  only (the client key is one ed25519 key per `NetHosts`), `internal-sftp`.
The namespaces have only the /24 route: hosts reach the controller at `bridge_address` and nothing else.

Names carry `<prefix><pid><letter>` (letter: which NetHosts of this process), so parallel runs never collide,
and a `NetHosts` first sweeps every leftover whose pid is dead (namespaces with their processes, links,
stray sshd, state dirs), so a killed run costs nothing. Needs: root and what `scripts/bootstrap` installs
(iproute2, util-linux, openssh-server/-client); without them the fixtures skip, under CI=true they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.ssh import HostSpec, SshOptions, SshPool
from shipyard.testing.servers import missing_server

BASE = Path("/run/shipyard-nethosts")  # root-owned, not world-writable: sshd's StrictModes accepts it
SPACE = ipaddress.ip_network("198.18.0.0/15")
MAX_HOSTS = 8
SSHD = "/usr/sbin/sshd"
TOOLS = ("ip", "ssh", "ssh-keygen", "nsenter", "unshare")
START_DEADLINE = 15.0
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# sh gets only fixed text; the host's name is its $1, sshd's config path its $2, the login user's ~/.bashrc $3.
# The controller's ~/.bashrc is hidden too: bash sources it even for `ssh host cmd`, and a developer's
# (pyenv init, ...) costs ~150 ms of CPU per SSH session, which a fresh host does not have.
BOOT = ('mount -t tmpfs -o mode=0755 tmpfs /srv && { [ ! -f "$3" ] || mount --bind /dev/null "$3"; } '
        '&& hostname "$1" && exec /usr/sbin/sshd -D -e -f "$2"')
_instances = 0


class NetHostsUnavailable(Exception):
    """Not root, or a tool is missing: the fixtures skip locally and fail under CI."""


def missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "namespaced test hosts need root"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not os.access(SSHD, os.X_OK):
        absent.append(SSHD + " (openssh-server)")
    return f"namespaced test hosts need {', '.join(absent)}" if absent else None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _owner_alive(token: str, pid: int) -> bool:
    """Whether the run that made `token` still runs: its pid exists, is no zombie, and did not start after the
    run's state dir last changed (else the pid now belongs to another process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if fields[0] in ("Z", "X"):
        return False
    with contextlib.suppress(OSError):
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return started <= (BASE / token).stat().st_mtime + 1.0  # btime has whole seconds
    return True


def _pids(test: Any) -> list[int]:
    """Processes (but this one) for whose /proc entry `test` is true (an entry gone meanwhile is skipped)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if test(entry):
                    pids.append(int(entry.name))
    return pids


def _netns_pids(netns: str) -> list[int]:
    """Every process whose network namespace is the named one (what `ip netns pids` does)."""
    try:
        want = os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return []
    return _pids(lambda entry: os.stat(entry / "ns" / "net").st_ino == want)


def cmdline_pids(pattern: re.Pattern[bytes], keep: Any = None) -> list[int]:
    """Processes whose command line matches `pattern`, unless `keep(match)`."""
    def test(entry: Path) -> bool:
        match = pattern.search((entry / "cmdline").read_bytes())
        return bool(match) and not (keep and keep(match))
    return _pids(test)


def _kill_all(pids_of: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pids := pids_of():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of {what} survive SIGKILL")
        time.sleep(0.02)


def _remove_netns(netns: str) -> None:
    _kill_all(lambda: _netns_pids(netns), f"netns {netns}")
    _ip("netns", "delete", netns, check=False)


class TestHost:
    """One host. `run`/`popen` execute inside its network, mount (private /srv) and UTS namespaces."""

    __test__ = False  # not a pytest test class

    def __init__(self, owner: NetHosts, name: str, slot: int) -> None:
        self.name = name
        self.slot = slot
        self.address = str(owner.network.network_address + 10 + slot)
        self.netns = f"{owner.token}-{name}"
        self.link = f"{owner.token}v{slot}"  # the controller's end of the veth; ifnames have 15 chars at most
        self.ssh_port = 22
        self.user = "root"
        self.client_key = owner.client_key
        self.dir = owner.dir / name
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.known_hosts = self.dir / "known_hosts"  # a known_hosts file with only this host's line
        self.host_key_line = ""  # "ssh-ed25519 AAAA..." once started
        self.sshd: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts_line(self) -> str:
        return f"{self.address} {self.host_key_line}"

    def enter_argv(self, argv: list[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this host (entering sshd's namespaces)."""
        assert self.sshd is not None, f"host {self.name} is not running"
        return ["nsenter", f"--target={self.sshd.pid}", "--net", "--mount", "--uts", "--", *argv]

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the host; defaults: check, captured text output, 30 s timeout."""
        kw.setdefault("check", True)
        kw.setdefault("timeout", 30)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.enter_argv(argv), **kw)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """A long-running process inside the host; killed with the host at the latest."""
        return subprocess.Popen(self.enter_argv(argv), **kw)

    def ssh_argv(self, *remote: str, connect_timeout: float = 5.0) -> list[str]:
        """The Debian `ssh` client command for `remote` on this host: strict host key, our client key."""
        return ["ssh", "-F", "none", "-i", str(self.client_key), "-p", str(self.ssh_port),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"ConnectTimeout={connect_timeout:g}",
                "-o", "LogLevel=ERROR", f"{self.user}@{self.address}", "--", *remote]

    def cut(self) -> None:
        """Take the host's link down: nothing reaches it, it reaches nothing."""
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")

    def __repr__(self) -> str:
        return f"TestHost({self.name!r}, {self.address})"


class NetHosts:
    """A bridge and up to 8 namespaced SSH hosts on it; `close()` removes every trace."""

    def __init__(self, prefix: str = "sy") -> None:
        global _instances
        if not re.fullmatch(r"[a-z]{1,3}", prefix):
            raise ValueError("prefix: 1 to 3 lowercase letters (interface names have 15 chars at most)")
        if (missing := missing_requirements()) is not None:
            raise NetHostsUnavailable(missing)
        self.prefix = prefix
        self.token = f"{prefix}{os.getpid()}{chr(ord('a') + _instances % 26)}"
        _instances += 1
        self.bridge = f"{self.token}br"
        self.hosts: dict[str, TestHost] = {}
        BASE.mkdir(mode=0o755, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        with self._lock():
            self.sweep(prefix)
            self.dir = BASE / self.token
            self.dir.mkdir(mode=0o700)
            self.client_key = self.dir / "id_ed25519"
            self.known_hosts = self.dir / "known_hosts"  # every current host's line
            try:
                self.network = self._free_network()
                self.bridge_address = str(self.network.network_address + 1)
                _ip("link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
                _ip("addr", "add", f"{self.bridge_address}/{self.network.prefixlen}", "dev", self.bridge)
                _ip("link", "set", self.bridge, "up")
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shipyard-tests",
                                "-f", str(self.client_key)], check=True, capture_output=True, timeout=30)
            except BaseException:
                self.close()
                raise

    @staticmethod
    @contextlib.contextmanager
    def _lock() -> Iterator[None]:
        """Serialises sweeping and picking a free /24 between test processes."""
        with open(BASE / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _free_network() -> ipaddress.IPv4Network:
        used = set()
        for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
            if match := re.search(r"inet (\S+)", line):
                used.add(ipaddress.ip_interface(match.group(1)).network)
        for net in SPACE.subnets(new_prefix=24):
            if not any(net.overlaps(other) for other in used):
                return net
        raise RuntimeError("no free /24 left in 198.18.0.0/15")

    @staticmethod
    def sweep(prefix: str) -> list[str]:
        """Remove leftovers of `prefix` whose process is dead; returns what was removed."""
        stale = re.compile(rf"^({re.escape(prefix)}(\d+)[a-z])(?:-|br$|v\d+$|$)")

        def dead(name: str) -> str | None:
            match = stale.match(name)
            return match.group(1) if match and not _owner_alive(match.group(1), int(match.group(2))) else None

        removed = []
        for line in _ip("netns", "list").stdout.splitlines():
            netns = line.split()[0] if line.split() else ""
            if dead(netns):
                _remove_netns(netns)
                removed.append(f"netns {netns}")
        for line in _ip("-o", "link", "show").stdout.splitlines():
            link = line.split(":")[1].strip().split("@")[0]
            if dead(link):
                _ip("link", "delete", link, check=False)
                removed.append(f"link {link}")
        # An sshd whose namespace name is gone already (its config path names the run that started it).
        marked = re.compile(rb"%s/(%s(\d+)[a-z])/" % (re.escape(str(BASE).encode()), re.escape(prefix.encode())))
        def live(match: re.Match[bytes]) -> bool:
            return _owner_alive(match.group(1).decode(), int(match.group(2)))

        if stray := cmdline_pids(marked, live):
            _kill_all(lambda: cmdline_pids(marked, live), f"stale {prefix} runs")
            removed.append(f"processes {stray}")
        for entry in BASE.iterdir() if BASE.exists() else []:
            if entry.is_dir() and dead(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(f"dir {entry}")
        return removed

    def add(self, name: str) -> TestHost:
        """A running host: namespace, link, address, private /srv, sshd answering on address:22."""
        if not NAME.match(name):
            raise ValueError(f"host name {name!r}: lowercase letters, digits and '-', starting with a letter")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        free = sorted(set(range(1, MAX_HOSTS + 1)) - {h.slot for h in self.hosts.values()})
        if not free:
            raise RuntimeError(f"at most {MAX_HOSTS} hosts at once")
        host = TestHost(self, name, free[0])
        self.hosts[name] = host
        try:
            self._start(host)
        except BaseException:
            self.remove(host)
            raise
        self._write_known_hosts()
        return host

    def _start(self, host: TestHost) -> None:
        host.dir.mkdir(mode=0o700)
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        _ip("link", "set", host.link, "master", self.bridge, "up")
        inside = ("-n", host.netns)
        _ip(*inside, "addr", "add", f"{host.address}/{self.network.prefixlen}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name,
                        "-f", str(host.host_key_path)], check=True, capture_output=True, timeout=30)
        host.host_key_line = " ".join(Path(f"{host.host_key_path}.pub").read_text().split()[:2])
        host.known_hosts.write_text(host.known_hosts_line + "\n")
        shutil.copyfile(f"{self.client_key}.pub", host.dir / "authorized_keys")
        config = host.dir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host.address}:{host.ssh_port}",
            f"HostKey {host.host_key_path}",
            f"PidFile {host.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {host.dir / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes yes", "UseDNS no",
            "PrintMotd no", "X11Forwarding no", "MaxStartups 64:30:128", "MaxSessions 64",
            "Subsystem sftp internal-sftp", "",
        ]))
        log = open(host.dir / "sshd.log", "wb")  # noqa: SIM115 - the child keeps it
        with log:
            host.sshd = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--propagation", "private",
                 "--", "sh", "-c", BOOT, "sh", host.name, str(config),
                 os.path.expanduser(f"~{host.user}/.bashrc")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self._await_banner(host)

    def _await_banner(self, host: TestHost) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert host.sshd is not None
            if host.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {host.name} exited {host.sshd.returncode}: "
                                   f"{(host.dir / 'sshd.log').read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((host.address, host.ssh_port), 1.0) as s:
                s.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {host.name} gave no SSH banner within {START_DEADLINE:g}s")
            time.sleep(0.02)

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text("".join(h.known_hosts_line + "\n" for h in self.hosts.values()))

    def remove(self, host: TestHost) -> None:
        """Kill everything in the host (sshd, its sessions, `popen`s), delete its namespace, link and dir."""
        _remove_netns(host.netns)
        if host.sshd is not None:  # gone with its namespace already, unless that was never made
            host.sshd.kill()
            host.sshd.wait(timeout=10)
        _ip("link", "delete", host.link, check=False)
        shutil.rmtree(host.dir, ignore_errors=True)
        self.hosts.pop(host.name, None)
        if self.dir.exists():
            self._write_known_hosts()

    def close(self) -> None:
        for host in list(self.hosts.values()):
            self.remove(host)
        _ip("link", "delete", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NetHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pool(prefix: str) -> NetHosts:
    """A `NetHosts` for a test or fixture: skipped when the machine cannot make hosts, failed under CI."""
    try:
        return NetHosts(prefix)
    except NetHostsUnavailable as err:
        missing_server(str(err))


class HostFactory:
    """What the `nethosts` fixture gives a test: `add(name)` hosts on the session bridge, removed after it."""

    def __init__(self, pool: NetHosts) -> None:
        self.pool = pool
        self.bridge_address = pool.bridge_address
        self.added: list[TestHost] = []

    def add(self, name: str) -> TestHost:
        host = self.pool.add(name)
        self.added.append(host)
        return host

    def close(self) -> None:
        for host in self.added:
            if host.name in self.pool.hosts:
                self.pool.remove(host)


def ssh_pool(hosts: TestHost | list[TestHost], known: Path, *, connect_timeout: float = 3.0,
             keepalive: float = 2.0) -> SshPool:
    """An SshPool to `hosts`, their keys written to the known_hosts file `known` (short timeouts: a cut host
    is noticed within seconds)."""
    chosen = hosts if isinstance(hosts, list) else [hosts]
    known.write_text("".join(h.known_hosts_line + "\n" for h in chosen))
    specs = {h.name: HostSpec(name=h.name, address=h.address, user=h.user) for h in chosen}
    return SshPool(specs, SshOptions(known_hosts=known, client_key=Path(chosen[0].client_key).read_text(),
                                     connect_timeout=connect_timeout, keepalive=keepalive))
