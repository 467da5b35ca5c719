"""Notice delivery: real SMTP (BILLING_SMTP_URL, e.g. smtp://user:pass@host:587?starttls=true), or, with no SMTP
configured (the embedded default), a log line with ids only. The Message-ID derives from the notice id, so a
re-delivery after a crash is recognisable as the same message.

A batch of notices is sent through one `session()`: over SMTP, one connection (and one TLS handshake and login)
for the whole batch instead of one per message."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import Protocol, TypedDict
from urllib.parse import parse_qs, unquote, urlparse

import aiosmtplib

from policies.states import NoticeStatus

log = logging.getLogger("billing.notices")


# (notice_id, to, subject, body[, attachments]); returns once accepted. Attachments: (file name, PDF bytes) pairs.
Send = Callable[..., Awaitable[None]]
Attachment = tuple[str, bytes]


class Mailer(Protocol):
    delivered_status: NoticeStatus  # SENT, or LOGGED when nothing is sent

    def session(self) -> contextlib.AbstractAsyncContextManager[Send]:
        """A `send` for a batch of messages: it returns once the message is accepted, and raises if it was not."""
        ...


def build_message(
    sender: str, notice_id: str, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{notice_id}@billing.notices>"
    message.set_content(body)
    for filename, pdf in attachments:  # I1: a receipt carries its invoice
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    return message


class _SmtpOptions(TypedDict):
    """The connection options of `aiosmtplib.SMTP` that BILLING_SMTP_URL gives."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool
    timeout: float


class SmtpMailer:
    delivered_status = NoticeStatus.SENT

    def __init__(self, url: str, sender: str, timeout: float = 15.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("smtp", "smtps"):
            raise ValueError("BILLING_SMTP_URL must start with smtp:// or smtps://")
        query = parse_qs(parsed.query)
        self._options: _SmtpOptions = {
            "hostname": parsed.hostname or "localhost",
            "port": parsed.port or (465 if parsed.scheme == "smtps" else 25),
            "username": unquote(parsed.username) if parsed.username else None,
            "password": unquote(parsed.password) if parsed.password else None,
            "use_tls": parsed.scheme == "smtps",
            "start_tls": query.get("starttls", ["false"])[0].lower() == "true",
            "timeout": timeout,
        }
        self._sender = sender

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        """One connection for the batch, opened at its first message (and again if the server closed it). After a
        failure (a refusal, a lost connection, a send given up by the caller's time limit) the connection is in an
        unknown state: it is closed, and the next message opens a new one."""
        client: aiosmtplib.SMTP | None = None

        async def send(
            notice_id: str, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
        ) -> None:
            nonlocal client
            try:
                if client is None or not client.is_connected:  # first message, or the server closed it
                    client = aiosmtplib.SMTP(**self._options)
                    await client.connect()
                await client.send_message(build_message(self._sender, notice_id, to, subject, body, attachments))
            except BaseException:
                if client is not None:
                    client.close()
                client = None
                raise

        try:
            yield send
        finally:
            if client is not None:
                try:
                    if client.is_connected:
                        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                            await client.quit(timeout=2)
                finally:
                    client.close()


class LogMailer:
    """No SMTP configured: the notice stays readable through the API; the log carries ids, never addresses."""

    delivered_status = NoticeStatus.LOGGED

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        yield self._log

    @staticmethod
    async def _log(notice_id: str, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()) -> None:
        log.info("notice recorded (no SMTP configured)", extra={"notice_id": notice_id})


def mailer_from(smtp_url: str, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender) if smtp_url else LogMailer()
