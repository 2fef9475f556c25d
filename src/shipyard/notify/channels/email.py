"""Email over SMTP (aiosmtplib), as a multipart text + HTML message.

The idempotency key becomes the Message-ID, which mail systems already use to drop duplicates.
Authentication and connection errors are retried (the server may come back); a refusal of every
recipient is not (the addresses are wrong).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from email.message import EmailMessage

import aiosmtplib

from shipyard.config.alerting import EmailChannel
from shipyard.errors import NotifyError
from shipyard.notify.channels.base import Delivery, details
from shipyard.notify.message import Message

TIMEOUT = 15.0


def render(message: Message, config: EmailChannel) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = f"[shipyard] [{message.severity}] {message.title}"
    mail["From"] = config.from_
    mail["To"] = ", ".join(config.to)
    mail["Message-ID"] = f"<{message.idempotency_key}@shipyard>"
    mail["X-Shipyard-Event"] = message.kind
    rows = details(message)
    text = "\n".join([message.text, "", *(f"{k}: {v}" for k, v in rows)])
    if message.dashboard_url and message.deployment_id:
        text += f"\n\n{message.dashboard_url.rstrip('/')}/deployments/{message.deployment_id}"
    mail.set_content(text)
    cells = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    mail.add_alternative(f"<html><body><h2>{html.escape(message.title)}</h2><p>{html.escape(message.text)}</p>"
                         f"<table>{cells}</table></body></html>", subtype="html")
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
