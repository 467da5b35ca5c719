"""Real parts for tests: the service as separate `billing serve` processes (replicas), and a local SMTP server."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller

from tests.conftest import SECRET
from tests.support.processes import ServerProcess, free_port, start_server, when_ready

__all__ = ["Inbox", "Replica", "SmtpServer", "free_port", "start_replica", "when_ready"]

Replica = ServerProcess  # a `billing serve` process of the tests


def start_replica(database_url: str, **env: str) -> Replica:
    """One `billing serve` process on a free loopback port, ready when it answers /healthz."""
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
    return start_server([sys.executable, "-m", "app.cli", "serve"], environment, name="replica")


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
