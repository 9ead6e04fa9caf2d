"""Email through the environment's SMTP server: high alerts and the daily digest. A message that
cannot be sent is logged and never fails the job; two attempts at most.

smtp://[user:password@]host[:port] (default port 25; STARTTLS whenever the server offers it, and
required once a password would cross), smtps://...:465 (TLS from the start). The server's
certificate is always verified: against SMTP_CA_FILE when set, else the system's CAs."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

from ubertruck_ops.blocks.alerting import AlertChannels
from ubertruck_ops.log import logger

ATTEMPTS = 2
PAUSE_SECONDS = 0.5


def _message(channels: AlertChannels, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject.replace("\n", " ")[:200]
    message["From"] = channels.email_from
    message["To"] = ", ".join(channels.email_to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="ubertruck-ops")
    message.set_content(body)
    return message


def _deliver(channels: AlertChannels, message: EmailMessage) -> None:
    url = urlsplit(channels.smtp_url.get_secret_value())
    context = ssl.create_default_context(cafile=channels.smtp_ca_file or None)
    timeout = channels.timeout_seconds
    if url.scheme == "smtps":
        client = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(url.hostname, url.port or 25, timeout=timeout)
    with client:
        client.ehlo()
        if url.scheme == "smtp" and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        if url.username:
            if url.scheme == "smtp" and not client.has_extn("auth"):
                raise smtplib.SMTPNotSupportedError("the server offers no login (AUTH) on this connection")
            if url.scheme == "smtp" and client.sock is not None and not isinstance(client.sock, ssl.SSLSocket):
                raise smtplib.SMTPNotSupportedError("the server offers no STARTTLS: the password is not sent in "
                                                    "clear text (use smtps:// or a server with STARTTLS)")
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(message)


def send_email(channels: AlertChannels, subject: str, body: str) -> bool:
    """Send one message to the block's recipients; return True when the server took it. Retry once on
    a connection error or a temporary (4xx) refusal. Never raises; the log names the error, never
    the URL (it holds the password)."""
    if "email" not in channels.configured():
        return False
    message = _message(channels, subject, body)
    outcome = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _deliver(channels, message)
            logger().info("email sent to %d recipient(s): %s", len(channels.email_to), message["Subject"])
            return True
        except smtplib.SMTPResponseException as exc:
            outcome = f"{type(exc).__name__} {exc.smtp_code}"
            if exc.smtp_code >= 500:
                break
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            outcome = type(exc).__name__ + (f": {exc}" if isinstance(exc, smtplib.SMTPNotSupportedError) else "")
        if attempt < ATTEMPTS:
            time.sleep(PAUSE_SECONDS)
    logger().warning("email %r not sent (%s); the job goes on", message["Subject"], outcome)
    return False
