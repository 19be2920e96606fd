"""Webhook channel: POST the alert as JSON, signed with HMAC-SHA256.

Headers: ``X-Stationflow-Signature: sha256=<hex>`` over the exact body bytes with the shared
secret (``STATIONFLOW_ALERTS_WEBHOOK_SECRET``), ``X-Stationflow-Timestamp`` (also in the
signed body), ``X-Stationflow-Notification-Id`` (stable across retries: receivers drop
repeats with it). 2xx is delivered; 408, 429 and 5xx are retried; other 4xx will never
succeed and fail the notification at once.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from alerts.channels import ChannelError, Notification

__all__ = ["SIGNATURE_HEADER", "WebhookChannel", "sign", "verify"]

SIGNATURE_HEADER = "X-Stationflow-Signature"
ID_HEADER = "X-Stationflow-Notification-Id"
TIMESTAMP_HEADER = "X-Stationflow-Timestamp"
RETRYABLE = {408, 425, 429}


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


class WebhookChannel:
    """POSTs to the member's URL."""

    name = "webhook"

    def __init__(self, secret: bytes, *, timeout_s: float = 5.0) -> None:
        self.secret = secret
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def body(self, note: Notification) -> bytes:
        """The JSON body: the alert, the texts, the notification id and the signing time."""
        document = {
            **note.payload,
            "notification_id": note.id,
            "kind": note.kind,
            "title": note.title,
            "title_zh": note.title_zh,
            "text": note.body,
            "sent_at": int(time.time()),
        }
        return orjson.dumps(document)

    async def send(self, note: Notification) -> None:
        """POST once; raise ChannelError unless the receiver answered 2xx."""
        body = self.body(note)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            ID_HEADER: note.id,
            TIMESTAMP_HEADER: str(int(time.time())),
            "User-Agent": "stationflow-alerts/1",
        }
        try:
            response = await self.client.post(note.target, content=body, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ChannelError(f"invalid webhook URL {note.target!r}: {exc}", retriable=False) from exc
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook {note.target} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        code = response.status_code
        retriable = code >= 500 or code in RETRYABLE
        answered = f"webhook {note.target} answered {code}: {response.text[:200]}"
        raise ChannelError(answered, retriable=retriable)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()
