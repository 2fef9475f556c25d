"""The namespaced test hosts themselves (tests/nethosts.py): SSH, private /srv, the way back to the
controller, cutting a link, and that nothing is left behind (also after a killed run)."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import nethosts as nethosts_module
from nethosts import BASE, HostFactory, NetHosts, TestHost, cmdline_pids, open_pool
from shipyard.testing.wait import wait_until

pytestmark = pytest.mark.nethosts


def ssh(host: TestHost, *remote: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(host.ssh_argv(*remote, connect_timeout=2), capture_output=True, text=True,
                          timeout=timeout)


def test_two_hosts_answer_ssh_as_themselves(nethosts: HostFactory) -> None:
    web1, web2 = nethosts.add("web-1"), nethosts.add("web-2")
    assert web1.address != web2.address
    for host in (web1, web2):
        done = ssh(host, "hostname && ip -4 -o addr show dev eth0")
        assert done.returncode == 0, done.stderr
        name, addr_line = done.stdout.splitlines()
        assert name == host.name
        assert f" {host.address}/24 " in addr_line
    # The host key really is checked: web-2's key does not pass for web-1's address.
    wrong = web1.ssh_argv("true")
    wrong[wrong.index(f"UserKnownHostsFile={web1.known_hosts}")] = f"UserKnownHostsFile={web2.known_hosts}"
    refused = subprocess.run(wrong, capture_output=True, text=True, timeout=20)
    assert refused.returncode == 255, refused.stderr


def test_srv_is_private_to_each_host(nethosts: HostFactory) -> None:
    web1, web2 = nethosts.add("web-1"), nethosts.add("web-2")
    marker = f"nethosts-{uuid.uuid4().hex}"
    web1.run(["tee", f"/srv/{marker}"], input="only here\n")
    assert ssh(web1, "cat", f"/srv/{marker}").stdout == "only here\n"  # SSH sessions see the host's /srv
    assert web2.run(["test", "-e", f"/srv/{marker}"], check=False).returncode == 1
    assert ssh(web2, "test", "-e", f"/srv/{marker}").returncode == 1
    assert not Path("/srv", marker).exists()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"controller saw {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def controller_http(nethosts: HostFactory) -> Iterator[str]:
    """A tiny HTTP server on the controller's bridge address (where hosts reach the controller)."""
    server = http.server.ThreadingHTTPServer((nethosts.bridge_address, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{nethosts.bridge_address}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def test_host_reaches_the_controller_at_the_bridge_address(nethosts: HostFactory, controller_http: str) -> None:
    web1 = nethosts.add("web-1")
    assert web1.run([sys.executable, "-c", GET, controller_http]).stdout.strip() == f"controller saw {web1.address}"
    # ... and only there: the namespace has no route but its /24.
    assert "default" not in web1.run(["ip", "route"]).stdout


def test_controller_reaches_a_service_on_a_host(nethosts: HostFactory) -> None:
    web1, web2 = nethosts.add("web-1"), nethosts.add("web-2")
    web1.run(["tee", "/srv/index.html"], input="served by web-1\n")
    server = web1.popen([sys.executable, "-m", "http.server", "--bind", web1.address, "--directory", "/srv", "8080"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def fetch(url: str) -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return str(response.read().decode())
            except OSError:
                return None

        url = f"http://{web1.address}:8080/"
        assert wait_until(lambda: fetch(url), 15, "web-1's HTTP server") == "served by web-1\n"
        # Another host reaches it too (a fleet's hosts share the bridge), through its own namespace.
        assert web2.run([sys.executable, "-c", GET, url]).stdout == "served by web-1\n\n"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_cut_host_is_unreachable_and_restore_brings_it_back(nethosts: HostFactory) -> None:
    web1, web2 = nethosts.add("web-1"), nethosts.add("web-2")
    assert ssh(web1, "true").returncode == 0
    web1.cut()
    started = time.monotonic()
    cut = ssh(web1, "true", timeout=15)
    assert cut.returncode == 255 and time.monotonic() - started < 10, cut.stderr
    assert ssh(web2, "hostname").stdout.strip() == "web-2"
    web1.restore()
    wait_until(lambda: ssh(web1, "true").returncode == 0, 15, "SSH to web-1 after restore()")


def _leftovers(token: str) -> list[str]:
    found = [f"netns {line}" for line in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                         text=True, check=True).stdout.splitlines()
             if line.startswith(token)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    found += [f"link {line}" for line in links.splitlines() if token in line]
    found += [f"process {pid}" for pid in cmdline_pids(re.compile(re.escape(f"{BASE / token}/".encode())))]
    if (BASE / token).exists():
        found.append(f"dir {BASE / token}")
    return found


def test_close_removes_every_trace() -> None:
    pool = open_pool("syc")
    with pool:
        hosts = [pool.add(f"h{n}") for n in range(1, 9)]
        with pytest.raises(RuntimeError, match="at most 8"):
            pool.add("h9")
        sessions = hosts[0].popen(["sleep", "300"])  # a process started inside a host dies with it
        assert _leftovers(pool.token)
    assert _leftovers(pool.token) == []
    assert sessions.wait(timeout=10) != 0
    assert all(h.sshd is not None and h.sshd.poll() is not None for h in hosts)


@pytest.fixture(params=["exited", "zombie", "reused"])
def dead_pid(request: pytest.FixtureRequest) -> Iterator[int]:
    """The pid of a run that is gone: exited and reaped, killed but not reaped yet, or reaped and its pid now
    another process's (started after the run's state dir last changed, which the test backdates)."""
    proc = subprocess.Popen(["sleep", "300"])
    if request.param == "exited":
        proc.kill()
        proc.wait()
    elif request.param == "zombie":
        proc.kill()
        wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1].startswith("Z"), 10,
                   "the killed process to be a zombie")
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_stale_leftovers_of_a_dead_run_are_swept(dead_pid: int) -> None:
    token = f"sys{dead_pid}a"
    netns, link = f"{token}-web-1", f"{token}v1"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "link", "add", f"{token}br", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns], check=True)
    (BASE / token).mkdir(parents=True)
    os.utime(BASE / token, (time.time() - 3600, time.time() - 3600))  # made before any "reused" pid started
    # A process left running inside the dead run's host, as a killed test leaves sshd behind.
    orphan = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "300"])
    # And an sshd whose namespace is gone already: found by the run's dir in its command line.
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                              "sshd", "-f", f"{BASE / token}/web-2/sshd_config"])
    try:
        wait_until(lambda: len(_leftovers(token)) >= 5, 10, "the simulated leftovers")
        with NetHosts("sys") as fresh:
            assert fresh.token != token
            assert _leftovers(token) == []
            assert orphan.wait(timeout=10) != 0
            assert stray.wait(timeout=10) != 0
    finally:
        orphan.kill()
        stray.kill()
        NetHosts.sweep("sys")


def test_missing_sshd_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nethosts_module, "SSHD", "/nonexistent/sshd")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        open_pool("sym")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true but .*openssh-server"):
        open_pool("sym")
