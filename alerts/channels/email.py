"""E-mail channel (SMTP, optionally STARTTLS and login), plain text in both languages."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from alerts.channels import ChannelError, Notification

__all__ = ["EmailChannel", "message"]


def message(note: Notification, sender: str) -> EmailMessage:
    """The e-mail of a notification."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = note.target
    msg["Subject"] = f"{note.title} / {note.title_zh}"
    msg["Message-ID"] = f"<{note.id}@stationflow>"  # stable: mail systems can drop repeats
    msg["X-Stationflow-Notification-Id"] = note.id
    msg.set_content(note.body)
    return msg


class EmailChannel:
    """One SMTP session per message (alerts are rare; no idle connection to keep alive)."""

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.username, self.password = username, password
        self.starttls = starttls
        self.timeout_s = timeout_s

    async def send(self, note: Notification) -> None:
        """Hand the message to the SMTP server; a permanent refusal (5xx) is not retried."""
        try:
            await aiosmtplib.send(
                message(note, self.sender),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.starttls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = f"SMTP server refused recipient {note.target}: {exc}"
            raise ChannelError(refused, retriable=False) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise ChannelError(f"SMTP {exc.code}: {exc.message}", retriable=exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP {self.host}:{self.port} unavailable: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing held open."""
