"""Local process plumbing shared by the agent and the router processes: unix socket names and binding,
flock-held pid files, atomic file writes, the event loop they run on.

It sits below both `shipyard.agent` and `shipyard.proxy` (and imports neither), so the two process
families share these rules without importing each other's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_RECENT_PORTS: deque[int] = deque(maxlen=256)
_PORTS_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1", exclude: Iterable[int] = ()) -> int:
    """A TCP port nobody listens on right now, and none of the last 256 this process handed out.

    The kernel may give the same port to two bind(0) calls in a row: a port handed out is only bound
    later by whoever gets it (a config is written with the router's and the server's ports before
    either listens), so without the memory two of them can be promised one port.
    """
    taken = set(exclude)
    with _PORTS_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in taken and port not in _RECENT_PORTS:
                _RECENT_PORTS.append(port)
                return port
    raise OSError("no free port found")


# sun_path is 108 bytes on Linux including the trailing NUL; keep a margin.
_MAX_SUN_PATH = 100


class SocketName:
    """A connectable/bindable name for a unix socket whose real path may exceed sun_path.

    Projects can live deep in a home directory; rather than fail there, a long path is reached through
    `/proc/self/fd/<dirfd>/<name>`, which the kernel resolves to the same inode. The dir fd must stay
    open while the name is used, so this object owns it until `close()`.
    """

    def __init__(self, path: Path) -> None:
        self._dirfd: int | None = None
        if len(os.fsencode(str(path))) <= _MAX_SUN_PATH:
            self.name = str(path)
        else:
            try:
                self._dirfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                self.name = str(path)  # no dir, so no server: connecting fails with the usual error
            else:
                self.name = f"/proc/self/fd/{self._dirfd}/{path.name}"

    def close(self) -> None:
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None


def bind_unix(path: Path, kind: int = socket.SOCK_STREAM, backlog: int = 128) -> socket.socket:
    """Bind a private unix socket: mode 0600 from the first moment (umask), not chmod'ed after.

    Callers hold the lock of the process that owns `path`, so a socket file already there is a dead
    predecessor's and is replaced.
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    name = SocketName(path)
    sock = socket.socket(socket.AF_UNIX, kind)
    old = os.umask(0o177)
    try:
        sock.bind(name.name)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
        name.close()
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """A blocking connection to a unix stream socket (long paths handled); OSError when nobody listens."""
    name = SocketName(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(name.name)
    except BaseException:
        sock.close()
        raise
    finally:
        name.close()
    return sock


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed, for every long-lived shipyard process: the router's throughput depends on it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


# ---- pid files held with flock -------------------------------------------------------------------
# A pid written in a file can outlive its process and be reused by another; an flock cannot: the kernel
# drops it when the holder dies, however it dies. So "is X running here?" is answered by the lock, and
# the pid inside is only used to signal or wait for it.

class LockHeld(Exception):
    """Another live process holds the lock; `pid` is what its file says (None if unreadable)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid or '?'}")
        self.pid = pid


def acquire_pidfile(path: Path) -> int:
    """Take the lock on `path` and write our pid; LockHeld when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(read_pid(path)) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release_pidfile(path: Path, fd: int) -> None:
    """Remove the pid file while still holding the lock, so no reader sees our pid after we exit."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pidfile_holder(path: Path) -> int | None:
    """The pid of the live process holding the lock (0 if it has not written it yet), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):    # no dir (or a file in its place): nobody
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---- files ---------------------------------------------------------------------------------------

def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader (or a crash) sees the old file or the new one, never half of one.

    Temp file, fsync, rename, then fsync of the directory so the rename itself is durable: what was
    acknowledged after this returns survives a power cut, not only a process crash.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
