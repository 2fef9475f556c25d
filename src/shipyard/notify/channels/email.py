"""Email over SMTP (aiosmtplib), as a multipart text + HTML message.

Headers RFC 5322 requires or relies on are set here, since neither the library nor every relay adds
them: `Date` (the event's time, so a retried delivery is the same message) and `Message-ID`, a proper
msg-id `<id-left@id-right>` whose right side is the sender's domain. Its left side is the outbox row's
idempotency key plus a digest of the event itself, stable across retries (mail systems drop a
re-delivered duplicate) yet unique across projects and databases whose event ids repeat.
Authentication and connection errors are retried (the server may come back); a refusal of every
recipient is not (the addresses are wrong).
"""

from __future__ import annotations

import hashlib
import html
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from shipyard.config.alerting import EmailChannel
from shipyard.errors import NotifyError
from shipyard.notify.channels.base import Delivery, details
from shipyard.notify.message import Message

TIMEOUT = 15.0
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _sent_at(message: Message) -> datetime:
    try:
        at = datetime.fromisoformat(message.at) if message.at else None
    except ValueError:
        at = None
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def message_id(message: Message, sender: str) -> str:
    """`<key.digest@domain>` (RFC 5322 section 3.6.4): the same for every retry of one delivery."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not _DOT_ATOM.fullmatch(domain):
        domain = socket.getfqdn() if _DOT_ATOM.fullmatch(socket.getfqdn()) else "shipyard.invalid"
    event = f"{message.kind}|{message.service}|{message.env}|{message.at}|{message.deployment_id}".encode()
    left = f"{message.idempotency_key}.{hashlib.sha256(event).hexdigest()[:16]}"
    if not _DOT_ATOM.fullmatch(left):
        left = hashlib.sha256(left.encode()).hexdigest()
    return f"<{left}@{domain}>"


def render(message: Message, config: EmailChannel) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"[shipyard] [{message.severity}] {message.title}"
    mail["From"] = config.from_
    mail["To"] = ", ".join(config.to)
    mail["Date"] = format_datetime(_sent_at(message))
    mail["Message-ID"] = message_id(message, config.from_)
    mail["X-Shipyard-Event"] = message.kind
    rows = details(message)
    text = "\n".join([message.text, "", *(f"{k}: {v}" for k, v in rows)])
    if message.dashboard_url and message.deployment_id:
        text += f"\n\n{message.dashboard_url.rstrip('/')}/deployments/{message.deployment_id}"
    if message.links:
        text += "\n\n" + "\n".join(f"{label}: {url}" for label, url in message.links)
    mail.set_content(text)
    links = "".join(f"<p><a href='{html.escape(str(url), quote=True)}'>{html.escape(str(label))}</a></p>"
                    for label, url in message.links)
    cells = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    mail.add_alternative(f"<html><body><h2>{html.escape(message.title)}</h2><p>{html.escape(message.text)}</p>"
                         f"<table>{cells}</table>{links}</body></html>", subtype="html")
    return mail


class EmailSender:
    pace = 0.0

    def __init__(self, name: str, config: EmailChannel, resolve: Callable[[str], str]) -> None:
        self.name, self.config, self.resolve = name, config, resolve

    @property
    def destination(self) -> str:
        return f"smtp://{self.config.smtp.host}:{self.config.smtp.port}"

    async def send(self, message: Message) -> Delivery:
        smtp = self.config.smtp
        try:
            await aiosmtplib.send(
                render(message, self.config), hostname=smtp.host, port=smtp.port,
                username=self.resolve(smtp.username) if smtp.username else None,
                password=self.resolve(smtp.password) if smtp.password else None,
                use_tls=smtp.tls == "ssl", start_tls=smtp.tls == "starttls",
                timeout=TIMEOUT)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(f"{self.name}: every recipient refused: {exc}", retryable=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
        return Delivery(self.name, 250)
