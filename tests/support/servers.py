"""Real parts for tests: the service as separate `billing serve` processes (replicas), and a local SMTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
from aiosmtpd.controller import Controller

from tests.conftest import SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=30)


def start_replica(database_url: str, **env: str) -> Replica:
    """One `billing serve` process on a free loopback port, ready when it answers /healthz."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    environment.update(
        BILLING_DATABASE_URL=database_url,
        BILLING_AUTH_SECRET=SECRET,
        BILLING_SANDBOX="true",
        BILLING_DEMO_PLANS="false",
        BILLING_SCHEDULER_ENABLED="false",
        BILLING_LOG_LEVEL="WARNING",
        BILLING_RATE_LIMIT_WRITES_PER_MINUTE="0",
    )
    environment.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return when_healthy(Replica(port, process), 30, lambda: process.stderr.read().decode()[-2000:])


def when_healthy(replica: Replica, seconds: float, exit_detail=lambda: "") -> Replica:
    """`replica` once it answers /healthz; an error if its process exits first or it is not healthy in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(f"replica exited with {replica.process.returncode}: {exit_detail()}")
        try:
            if httpx.get(f"{replica.url}/healthz", timeout=1).status_code == 200:
                return replica
        except httpx.TransportError:
            time.sleep(0.1)
    replica.process.kill()
    raise RuntimeError(f"replica did not become healthy in {seconds:g} s")


@dataclass
class Inbox:
    messages: list = field(default_factory=list)
    peers: list = field(default_factory=list)  # the client's address of each message: one per SMTP connection

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes
        from email.policy import default

        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=default)))
        self.peers.append(session.peer)
        return "250 OK"


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
