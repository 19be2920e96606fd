"""SMS channel through an HTTP gateway with a configurable JSON request template.

``STATIONFLOW_ALERTS_SMS_TEMPLATE`` is the request body with ``{to}`` and ``{text}``
placeholders, e.g. ``{"phone": "{to}", "content": "{text}", "sign": "防汛"}``; the values
are inserted JSON-escaped, so a message can hold quotes and newlines. The text is the
Chinese title and the English title (SMS are short): the console link is in the e-mail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from alerts.channels import ChannelError, Notification

__all__ = ["SmsChannel", "render_request"]

MAX_TEXT = 280


def _escaped(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def render_request(template: str, *, to: str, text: str) -> bytes:
    """The gateway request body; ValueError when the template does not make valid JSON."""
    body = template.replace("{to}", _escaped(to)).replace("{text}", _escaped(text))
    json.loads(body)  # a broken template is a configuration error, not a message to send
    return body.encode()


class SmsChannel:
    """POSTs one request per recipient to the gateway."""

    name = "sms"

    def __init__(
        self, url: str, template: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0
    ) -> None:
        self.url = url
        self.template = template
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, note: Notification) -> None:
        """Ask the gateway to send; 2xx is delivered."""
        text = f"{note.title_zh} / {note.title}"[:MAX_TEXT]
        try:
            body = render_request(self.template, to=note.target, text=text)
        except ValueError as exc:
            raise ChannelError(f"SMS template does not give valid JSON: {exc}", retriable=False) from exc
        try:
            response = await self.client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise ChannelError(f"SMS gateway {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            code = response.status_code
            retriable = code >= 500 or code in (408, 429)
            raise ChannelError(f"SMS gateway answered {code}: {response.text[:200]}", retriable=retriable)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()
