"""Notice delivery: real SMTP (BILLING_SMTP_URL, e.g. smtp://user:pass@host:587?starttls=true), or, with no SMTP
configured (the embedded default), a log line with ids only. The Message-ID derives from the notice id, so a
re-delivery after a crash is recognisable as the same message."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

import aiosmtplib

log = logging.getLogger("billing.notices")


class Mailer(Protocol):
    delivered_status: str  # "sent" or "logged"

    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None: ...


def build_message(sender: str, notice_id: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{notice_id}@billing.notices>"
    message.set_content(body)
    return message


class SmtpMailer:
    delivered_status = "sent"

    def __init__(self, url: str, sender: str, timeout: float = 15.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps"):
            raise ValueError("BILLING_SMTP_URL must start with smtp:// or smtps://")
        query = parse_qs(parsed.query)
        self._options = {
            "hostname": parsed.hostname or "localhost",
            "port": parsed.port or (465 if parsed.scheme == "smtps" else 25),
            "username": unquote(parsed.username) if parsed.username else None,
            "password": unquote(parsed.password) if parsed.password else None,
            "use_tls": parsed.scheme == "smtps",
            "start_tls": query.get("starttls", ["false"])[0].lower() == "true",
            "timeout": timeout,
        }
        self._sender = sender

    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None:
        await aiosmtplib.send(build_message(self._sender, notice_id, to, subject, body), **self._options)


class LogMailer:
    """No SMTP configured: the notice stays readable through the API; the log carries ids, never addresses."""

    delivered_status = "logged"

    async def send(self, notice_id: str, to: str, subject: str, body: str) -> None:
        log.info("notice recorded (no SMTP configured)", extra={"notice_id": notice_id})


def mailer_from(smtp_url: str, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender) if smtp_url else LogMailer()
