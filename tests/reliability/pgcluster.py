"""A throwaway PostgreSQL cluster of the test's own (Debian's initdb and pg_ctl), for faults that must not touch the
machine's shared server: restarting it, terminating every connection. Listens on a free loopback port, its unix
socket in its own directory; run as the `postgres` OS user when the tests run as root (initdb refuses root).
Always stopped and removed, even when the test fails."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self, bin_dir: Path, user: str | None) -> None:
        self.bin = bin_dir
        self.user = user  # the OS user that runs the server (None: this process's own)
        self.root = Path(tempfile.mkdtemp(prefix="billing-pgfault-"))
        self.data = self.root / "data"
        self.port = free_port()
        if user is not None:
            info = pwd.getpwnam(user)
            os.chown(self.root, info.pw_uid, info.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def _options(self) -> str:
        # No fsync (the machine does not crash under the test), but every COMMIT is durable before it is answered
        # (synchronous_commit stays on): a write the service acknowledged must survive the restart.
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=100"

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            self._options(),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast`, as `pg_ctl restart` does: sessions are terminated, then a clean shutdown."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def cluster_or_reason() -> tuple[Cluster | None, str]:
    """A new, initialised (not started) cluster, or why none can be made here."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        return None, "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin"
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no `postgres` OS user to run initdb as"
        if shutil.which("runuser") is None:
            return None, "running as root and `runuser` is missing"
        user = "postgres"
    cluster = Cluster(bin_dir, user)
    try:
        return cluster.init(), ""
    except Exception as exc:
        cluster.destroy()
        return None, f"initdb failed: {exc}"


def wait_until_ready(cluster: Cluster, seconds: float = 30) -> None:
    import asyncio

    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(cluster.url, timeout=2)
        except Exception:
            return False
        await conn.close()
        return True

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if asyncio.run(probe()):
            return
        time.sleep(0.1)
    raise RuntimeError("the throwaway PostgreSQL did not accept connections in time")
