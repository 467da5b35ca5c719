"""Server processes on loopback ports: the one starter the tests (tests/support/servers.py, the reliability tests,
the fake Stripe) and the benchmarks (bench/run.py, bench/profile.py) share.

Standard library only, so that bench/ can import it without the tests' dependencies (and without importing
tests/conftest.py); nothing here imports bench/. A server is started on a free 127.0.0.1 port, its stderr goes to a
file (a pipe nobody reads could fill up and stall it), and it counts as started once its health URL answers 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# Loopback only: no proxy from the environment stands between a check and the server it checks.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A started server: its port, its process and where its stderr went."""

    port: int
    process: subprocess.Popen
    name: str = "server"
    log_path: Path | None = None  # its stderr, when the caller chose the file
    _log: IO[bytes] | None = field(default=None, repr=False)  # its stderr otherwise (a temporary file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        """The end of what the process wrote to stderr."""
        if self.log_path is not None:
            try:
                return self.log_path.read_text(errors="replace")[-chars:]
            except OSError:
                return ""
        if self._log is not None:
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-chars:]
        return ""

    def exited(self) -> bool:
        return self.process.poll() is not None

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """SIGTERM (SIGKILL with `kill`), then wait up to `timeout` seconds; killed if it has not exited by then."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (from /proc/<pid>/stat)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM of /proc/<pid>/status)."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with _LOCAL.open(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def when_ready(
    server: ServerProcess, seconds: float = 30.0, ready: Callable[[ServerProcess], bool] | None = None
) -> ServerProcess:
    """`server` once `ready(server)` (default: its /healthz answers 200); a RuntimeError, with the end of its
    stderr, if the process exits first, and the process killed and a RuntimeError if it is not ready in time."""
    check = ready or (lambda s: answers(f"{s.url}/healthz"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.exited():
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}: {server.log_tail()}")
        if check(server):
            return server
        time.sleep(0.1)
    server.stop(kill=True)
    raise RuntimeError(f"{server.name} did not become ready in {seconds:g} s: {server.log_tail()}")


def start_server(
    cmd: Sequence[str],
    env: Mapping[str, str],
    *,
    name: str = "server",
    cwd: Path | str | None = None,
    log_path: Path | None = None,
    seconds: float = 30.0,
    ready: Callable[[ServerProcess], bool] | None = None,
) -> ServerProcess:
    """`cmd --host 127.0.0.1 --port <a free port>` started with exactly `env`, its stdout discarded and its stderr
    appended to `log_path` (a temporary file without one); returned once ready (see `when_ready`)."""
    port = free_port()
    log: IO[bytes] = open(log_path, "ab") if log_path else tempfile.TemporaryFile()  # noqa: SIM115 - kept open
    process = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    if log_path:
        log.close()  # the child has its own descriptor; the file is read back by path
        server = ServerProcess(port, process, name, log_path)
    else:
        server = ServerProcess(port, process, name, None, log)
    return when_ready(server, seconds, ready)
