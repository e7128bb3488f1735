"""Outgoing mail: SMTP when configured, else a file in the data dir's outbox plus a log line."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path

import structlog
from sqlalchemy.orm import Session

from tradeloop.db import run_after_commit
from tradeloop.settings import Settings

log = structlog.get_logger(__name__)


def build_message(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((settings.mailer_from_name, settings.mailer_from_email))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    message["Message-ID"] = make_msgid(domain="tradeloop")
    message.set_content(body)
    return message


def send_mail(settings: Settings, to: str, subject: str, body: str) -> Path | None:
    """Deliver a plain-text mail; returns the outbox file when no SMTP server is configured."""
    message = build_message(settings, to, subject, body)
    if settings.smtp_host:
        _send_smtp(settings, message)
        log.info("mail_sent", to=to, subject=subject, via="smtp")
        return None
    return _write_to_outbox(settings, message)


def _send_smtp(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


def _write_to_outbox(settings: Settings, message: EmailMessage) -> Path:
    settings.outbox_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = settings.outbox_dir / f"{stamp}-{message['To'].replace('@', '_at_')}.eml"
    path.write_bytes(bytes(message))
    path.chmod(0o600)
    log.info("mail_written_to_outbox", to=message["To"], subject=message["Subject"],
             path=str(path), body=message.get_content())
    return path


def mail_after_commit(session: Session, settings: Settings) -> Callable[[str, str, str], None]:
    """A mailer that sends once the session commits, so no mail refers to a rolled-back row.

    A delivery failure is logged, never raised: the user's action has already succeeded.
    """

    def send_later(to: str, subject: str, body: str) -> None:
        def deliver() -> None:
            try:
                send_mail(settings, to, subject, body)
            except Exception:
                log.exception("mail_delivery_failed", to=to, subject=subject)

        run_after_commit(session, deliver)

    return send_later
